// Runtime: the event loop (posting from threads, deferred work, timers, signals, clean shutdown) and
// the lifetime of its handles, and a TCP stream closed while it connects.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>

#include "Runtime/EventLoop.h"
#include "Runtime/TcpStream.h"
#include "Support/Waiting.h"

using namespace messaging;
using namespace std::chrono_literals;

TEST_SUITE("Runtime.EventLoop") {
    TEST_CASE("Work posted from many threads runs on the loop thread - in order per thread") {
        EventLoopThread loop_thread;
        std::mutex mutex;
        std::vector<int> seen;
        std::atomic<int> off_thread{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t)
            threads.emplace_back([&, t] {
                for (int i = 0; i < 250; ++i)
                    loop_thread.loop().Post([&, t, i] {
                        if (!loop_thread.loop().IsLoopThread()) ++off_thread;
                        std::lock_guard lock(mutex);
                        seen.push_back(t * 1000 + i);
                    });
            });
        for (auto& thread : threads) thread.join();
        // Invoke runs after everything posted before it.
        CHECK(loop_thread.loop().Invoke([&] { return static_cast<int>(seen.size()); }) == 1000);
        CHECK(off_thread == 0);
        std::vector<int> last(4, -1);
        for (int value : seen) {
            CHECK(value % 1000 > last[value / 1000]);
            last[value / 1000] = value % 1000;
        }
    }

    TEST_CASE("Timers fire after their delay - repeat - and stop when destroyed") {
        EventLoopThread loop_thread;
        std::atomic<int> ticks{0};
        std::promise<std::chrono::steady_clock::duration> one_shot;
        const auto start = std::chrono::steady_clock::now();
        loop_thread.loop().Invoke([&] {
            loop_thread.loop().Schedule(50ms, [&] { one_shot.set_value(std::chrono::steady_clock::now() - start); });
        });
        CHECK(one_shot.get_future().get() >= 50ms);
        std::unique_ptr<Timer> timer;
        loop_thread.loop().Invoke([&] {
            timer = std::make_unique<Timer>(loop_thread.loop());
            timer->Start(
                1ms, [&] { ++ticks; }, 1ms);
        });
        REQUIRE(test_support::WaitFor([&] { return ticks >= 5; }));
        loop_thread.loop().Invoke([&] { timer.reset(); });
        const int after = loop_thread.loop().Invoke([&] { return ticks.load(); });
        // A round trip through the loop shows no tick ran after the timer was destroyed.
        CHECK(loop_thread.loop().Invoke([&] { return ticks.load(); }) == after);
    }

    TEST_CASE("A signal is delivered to its watcher on the loop thread") {
        EventLoopThread loop_thread;
        std::promise<bool> got;
        std::unique_ptr<SignalWatcher> watcher;
        loop_thread.loop().Invoke([&] {
            watcher = std::make_unique<SignalWatcher>(loop_thread.loop(), SIGUSR1,
                                                      [&] { got.set_value(loop_thread.loop().IsLoopThread()); });
        });
        ::kill(::getpid(), SIGUSR1);
        auto future = got.get_future();
        REQUIRE(future.wait_for(5s) == std::future_status::ready);
        CHECK(future.get());
        loop_thread.loop().Invoke([&] { watcher.reset(); });
    }

    TEST_CASE("Destroying a loop closes handles left open and frees what they hold") {
        auto loop = std::make_unique<EventLoop>();
        bool ran = false;
        auto held = std::make_shared<int>(0);
        std::weak_ptr<int> watch = held;
        loop->Schedule(10s, [&ran, held] { ran = true; });  // never due
        held.reset();
        CHECK_FALSE(watch.expired());  // the timer's state holds it
        loop.reset();
        CHECK(watch.expired());  // the handle was closed and its state freed, not leaked
        CHECK_FALSE(ran);
    }

    TEST_CASE("Deferred work runs at the end of the turn in order - work it defers runs in the same pass") {
        EventLoopThread loop_thread;
        auto& loop = loop_thread.loop();
        std::promise<std::vector<std::string>> done;
        auto future = done.get_future();
        auto order = std::make_shared<std::vector<std::string>>();
        loop.Invoke([&] {
            loop.Defer([&, order] {
                order->push_back("first");
                loop.Defer([&, order] {
                    order->push_back("deferred by first");
                    done.set_value(*order);
                });
            });
            loop.Defer([order] { order->push_back("second"); });
            order->push_back("the turn itself");
        });
        REQUIRE(future.wait_for(10s) == std::future_status::ready);
        CHECK(future.get() == std::vector<std::string>{"the turn itself", "first", "second", "deferred by first"});
    }

    TEST_CASE("An end-of-turn task runs once per turn however often requested - a dropped task never runs") {
        EventLoopThread loop_thread;
        auto& loop = loop_thread.loop();
        std::promise<int> done;
        auto future = done.get_future();
        int runs = 0;
        bool dropped_ran = false;
        std::unique_ptr<EndOfTurnTask> task, dropped;
        loop.Invoke([&] {
            task = std::make_unique<EndOfTurnTask>(loop, [&] {
                // A request from the work itself runs it again in the same pass, once.
                if (++runs == 1) task->Request();
                if (runs == 2) loop.Defer([&] { done.set_value(runs); });
            });
            dropped = std::make_unique<EndOfTurnTask>(loop, [&] { dropped_ran = true; });
            task->Request();
            task->Request();
            task->Request();
            dropped->Request();
            dropped.reset();
        });
        REQUIRE(future.wait_for(10s) == std::future_status::ready);
        CHECK(future.get() == 2);
        CHECK(loop.Invoke([&] { return dropped_ran; }) == false);
        CHECK(loop.Invoke([&] { return runs; }) == 2);
        loop.Invoke([&] { task.reset(); });
    }
}

TEST_SUITE("Runtime.TcpStream") {
    TEST_CASE("A stream closed after its host name resolved - before the loop saw it - never connects") {
        // A listener the stream would connect to.
        const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        REQUIRE(listener >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t length = sizeof address;
        REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(listener, 4) == 0);
        REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);

        bool connected = false;
        bool failed = false;
        {
            EventLoop loop;
            uv_run(loop.raw(), UV_RUN_NOWAIT);  // registers the loop's own watchers with epoll
            auto stream =
                std::make_unique<TcpStream>(loop, TcpStream::Callbacks{.connected = [&] { connected = true; },
                                                                       .received = {},
                                                                       .failed = [&](int) { failed = true; }});
            stream->Connect("127.0.0.1", ntohs(address.sin_port));
            // The name is resolved on libuv's thread pool, which then wakes the loop: wait for that
            // wake-up (the loop's epoll descriptor turns readable) without running the loop, so the
            // resolution's callback and the close below fall into the same turn, as when a service
            // that failed to start tears down while its broker probe resolves.
            pollfd woken{.fd = uv_backend_fd(loop.raw()), .events = POLLIN, .revents = 0};
            REQUIRE(::poll(&woken, 1, 10000) == 1);
            stream.reset();
        }  // the loop's destructor runs that turn: connecting on the closing handle aborted here

        CHECK_FALSE(connected);
        CHECK_FALSE(failed);
        const int accepted = ::accept(listener, nullptr, nullptr);
        CHECK(accepted == -1);  // no connection was attempted
        if (accepted >= 0) ::close(accepted);
        ::close(listener);
    }
}
