// The libuv event loop each service runs on, with RAII owners for its handles. One thread runs the
// loop and owns everything attached to it; other threads hand work over with Post() (uv_async).
// Handle owners honour the uv_close contract: memory is released in the close callback.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <vector>

namespace messaging {

class EventLoop {
  public:
    EventLoop();
    ~EventLoop();  // closes every handle still open and drains the loop
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    uv_loop_t* raw() { return &loop_; }

    // Runs until Stop(). The calling thread becomes the loop thread.
    void Run();
    // Thread-safe.
    void Stop();
    // Thread-safe: `work` runs on the loop thread, in order of posting.
    void Post(std::function<void()> work);
    // Loop thread only: `work` runs at the end of this turn of the loop, before it waits for events
    // again (after every ready event has been handled), in order of deferral. Work deferred by deferred
    // work runs in the same pass. For batching: a commit, a flush of buffered socket writes.
    void Defer(std::function<void()> work);
    bool IsLoopThread() const { return std::this_thread::get_id() == loop_thread_; }

    // Runs `work` on the loop thread and waits for its result (from any other thread).
    template <class F>
    auto Invoke(F&& work) -> std::invoke_result_t<F> {
        using R = std::invoke_result_t<F>;
        if (IsLoopThread()) return work();
        auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(work));
        auto future = task->get_future();
        Post([task] { (*task)(); });
        return future.get();
    }

    // As Invoke, for a caller that may not wait longer than `timeout`: nullopt if the loop did not run
    // `work` in time. The work still runs later; it must own what it touches.
    template <class F>
    auto InvokeFor(F&& work, std::chrono::milliseconds timeout) -> std::optional<std::invoke_result_t<F>> {
        using R = std::invoke_result_t<F>;
        auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(work));
        auto future = task->get_future();
        Post([task] { (*task)(); });
        if (future.wait_for(timeout) != std::future_status::ready) return std::nullopt;
        return future.get();
    }

    // One-shot timer owned by the loop: runs `work` after `delay` unless the loop is closed first.
    void Schedule(std::chrono::milliseconds delay, std::function<void()> work);

    // Expires when the loop is destroyed. A handle owner (Timer, SignalWatcher, TcpStream, ...) that
    // outlives its loop finds its handle already closed and freed by the loop's destructor, and must
    // not touch it: it checks this first.
    std::weak_ptr<void> lifetime() const { return lifetime_; }

  private:
    static void OnAsync(uv_async_t* handle);
    static void OnPrepare(uv_prepare_t* handle);

    uv_loop_t loop_{};
    uv_async_t* async_ = nullptr;
    uv_prepare_t* prepare_ = nullptr;
    std::vector<std::function<void()>> deferred_;
    std::mutex mutex_;
    std::vector<std::function<void()>> posted_;
    std::thread::id loop_thread_;
    bool stop_requested_ = false;
    std::shared_ptr<void> lifetime_ = std::make_shared<int>(0);
};

// Work that runs once at the end of the turn in which it was requested, however often it was
// requested in that turn (a batch commit, a flush of buffered writes); a request made by the work
// itself runs it again in the same pass. Loop thread only; destroying it drops a pending run.
class EndOfTurnTask {
  public:
    EndOfTurnTask(EventLoop& loop, std::function<void()> work);
    EndOfTurnTask(const EndOfTurnTask&) = delete;
    EndOfTurnTask& operator=(const EndOfTurnTask&) = delete;
    void Request();

  private:
    EventLoop& loop_;
    std::function<void()> work_;
    bool requested_ = false;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A repeating or one-shot timer. Create, use and destroy it on the loop thread. Destroying it after
// its loop is safe (it does nothing then); starting it then throws std::logic_error.
class Timer {
  public:
    explicit Timer(EventLoop& loop);
    ~Timer();
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    void Start(std::chrono::milliseconds delay, std::function<void()> callback,
               std::chrono::milliseconds repeat = std::chrono::milliseconds(0));
    void Stop();
    bool IsActive() const;  // started and not yet fired (one-shot) or stopped

  private:
    struct State;
    State* state_;  // freed by the uv_close callback, or by the loop's destructor if it goes first
    std::weak_ptr<void> loop_lifetime_;
};

// Calls `callback` on the loop thread whenever `signal_number` arrives.
class SignalWatcher {
  public:
    SignalWatcher(EventLoop& loop, int signal_number, std::function<void()> callback);
    ~SignalWatcher();
    SignalWatcher(const SignalWatcher&) = delete;
    SignalWatcher& operator=(const SignalWatcher&) = delete;

  private:
    struct State;
    State* state_;
    std::weak_ptr<void> loop_lifetime_;
};

// Runs an EventLoop on a thread of its own; used by tests and by tools that drive a service.
class EventLoopThread {
  public:
    EventLoopThread();
    ~EventLoopThread();  // stops the loop and joins
    EventLoop& loop() { return *loop_; }

  private:
    std::unique_ptr<EventLoop> loop_;
    std::thread thread_;
};

}  // namespace messaging
