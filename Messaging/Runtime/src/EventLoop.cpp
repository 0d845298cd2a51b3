#include "Runtime/EventLoop.h"

#include "Runtime/HandleState.h"

#include <stdexcept>
#include <string>

namespace messaging {
namespace {

// libuv keeps loop time in whole milliseconds, so a timer can fire up to 1 ms before `delay` has
// passed on the steady clock. A delay is a minimum (retry intervals, timeouts): round it up.
std::uint64_t TimerDelay(std::chrono::milliseconds delay) {
    return delay.count() > 0 ? static_cast<std::uint64_t>(delay.count()) + 1 : 0;
}

void Check(int rc, const char* what) {
    if (rc < 0) throw std::runtime_error(std::string(what) + ": " + uv_strerror(rc));
}

}  // namespace

EventLoop::EventLoop() {
    Check(uv_loop_init(&loop_), "uv_loop_init");
    async_ = new uv_async_t;
    async_->data = this;
    Check(uv_async_init(&loop_, async_, &EventLoop::OnAsync), "uv_async_init");
    prepare_ = new uv_prepare_t;
    prepare_->data = this;
    Check(uv_prepare_init(&loop_, prepare_), "uv_prepare_init");
    loop_thread_ = std::this_thread::get_id();
}

EventLoop::~EventLoop() {
    lifetime_.reset();  // handle owners that outlive the loop leave their (freed) handles alone
    uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
    uv_close(reinterpret_cast<uv_handle_t*>(prepare_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_prepare_t*>(h); });
    // Close whatever is still open; the owners' close callbacks free their memory.
    uv_walk(
        &loop_, [](uv_handle_t* handle, void*) { CloseAndFree(handle); }, nullptr);
    while (uv_run(&loop_, UV_RUN_NOWAIT) != 0) {
    }
    uv_loop_close(&loop_);
}

void EventLoop::Run() {
    loop_thread_ = std::this_thread::get_id();
    {
        std::lock_guard lock(mutex_);
        if (stop_requested_) {
            stop_requested_ = false;
            return;
        }
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
}

void EventLoop::Stop() {
    Post([this] { uv_stop(&loop_); });
}

void EventLoop::Post(std::function<void()> work) {
    {
        std::lock_guard lock(mutex_);
        posted_.push_back(std::move(work));
    }
    uv_async_send(async_);
}

void EventLoop::OnAsync(uv_async_t* handle) {
    auto* self = static_cast<EventLoop*>(handle->data);
    // Sends coalesce: drain everything posted so far, including work posted by the work itself.
    for (;;) {
        std::vector<std::function<void()>> batch;
        {
            std::lock_guard lock(self->mutex_);
            batch.swap(self->posted_);
        }
        if (batch.empty()) return;
        for (auto& work : batch) work();
    }
}

void EventLoop::Defer(std::function<void()> work) {
    if (deferred_.empty()) Check(uv_prepare_start(prepare_, &EventLoop::OnPrepare), "uv_prepare_start");
    deferred_.push_back(std::move(work));
}

void EventLoop::OnPrepare(uv_prepare_t* handle) {
    auto* self = static_cast<EventLoop*>(handle->data);
    while (!self->deferred_.empty()) {
        std::vector<std::function<void()>> batch;
        batch.swap(self->deferred_);
        for (auto& work : batch) work();
    }
    uv_prepare_stop(handle);
}

EndOfTurnTask::EndOfTurnTask(EventLoop& loop, std::function<void()> work) : loop_(loop), work_(std::move(work)) {}

void EndOfTurnTask::Request() {
    if (requested_) return;
    requested_ = true;
    loop_.Defer([this, alive = std::weak_ptr<bool>(alive_)] {
        if (alive.expired()) return;
        requested_ = false;
        work_();
    });
}

void EventLoop::Schedule(std::chrono::milliseconds delay, std::function<void()> work) {
    struct OneShot : HandleState {
        uv_timer_t handle{};
        std::function<void()> work;
    };
    auto* shot = new OneShot;
    shot->work = std::move(work);
    shot->handle.data = shot;
    Check(uv_timer_init(&loop_, &shot->handle), "uv_timer_init");
    uv_update_time(&loop_);  // measure the delay from now, not from the start of this loop iteration
    uv_timer_start(
        &shot->handle,
        [](uv_timer_t* t) {
            auto* s = static_cast<OneShot*>(t->data);
            auto fn = std::move(s->work);
            CloseAndFree(reinterpret_cast<uv_handle_t*>(t));
            fn();
        },
        TimerDelay(delay), 0);
}

struct Timer::State : HandleState {
    uv_timer_t handle{};
    std::function<void()> callback;
};

Timer::Timer(EventLoop& loop) : state_(new State), loop_lifetime_(loop.lifetime()) {
    state_->handle.data = state_;
    Check(uv_timer_init(loop.raw(), &state_->handle), "uv_timer_init");
}

Timer::~Timer() {
    if (loop_lifetime_.expired()) return;  // the loop's destructor closed and freed the handle
    uv_timer_stop(&state_->handle);
    state_->callback = nullptr;
    CloseAndFree(reinterpret_cast<uv_handle_t*>(&state_->handle));
}

void Timer::Start(std::chrono::milliseconds delay, std::function<void()> callback, std::chrono::milliseconds repeat) {
    if (loop_lifetime_.expired()) throw std::logic_error("Timer::Start: its event loop is gone");
    state_->callback = std::move(callback);
    uv_update_time(state_->handle.loop);
    uv_timer_start(
        &state_->handle,
        [](uv_timer_t* t) {
            auto* s = static_cast<State*>(t->data);
            if (s->callback) {
                auto run = s->callback;  // the callback may destroy or restart the timer
                run();
            }
        },
        TimerDelay(delay), static_cast<std::uint64_t>(repeat.count()));
}

void Timer::Stop() {
    if (loop_lifetime_.expired()) return;
    uv_timer_stop(&state_->handle);
}

bool Timer::IsActive() const {
    return !loop_lifetime_.expired() && uv_is_active(reinterpret_cast<const uv_handle_t*>(&state_->handle)) != 0;
}

struct SignalWatcher::State : HandleState {
    uv_signal_t handle{};
    std::function<void()> callback;
};

SignalWatcher::SignalWatcher(EventLoop& loop, int signal_number, std::function<void()> callback)
    : state_(new State), loop_lifetime_(loop.lifetime()) {
    state_->callback = std::move(callback);
    state_->handle.data = state_;
    Check(uv_signal_init(loop.raw(), &state_->handle), "uv_signal_init");
    Check(uv_signal_start(
              &state_->handle, [](uv_signal_t* h, int) { static_cast<State*>(h->data)->callback(); }, signal_number),
          "uv_signal_start");
}

SignalWatcher::~SignalWatcher() {
    if (loop_lifetime_.expired()) return;
    uv_signal_stop(&state_->handle);
    CloseAndFree(reinterpret_cast<uv_handle_t*>(&state_->handle));
}

EventLoopThread::EventLoopThread() {
    std::promise<void> started;
    auto ready = started.get_future();
    loop_ = std::make_unique<EventLoop>();
    thread_ = std::thread([this, &started] {
        loop_->Post([&started] { started.set_value(); });
        loop_->Run();
    });
    ready.wait();
}

EventLoopThread::~EventLoopThread() {
    loop_->Stop();
    thread_.join();
}

}  // namespace messaging
