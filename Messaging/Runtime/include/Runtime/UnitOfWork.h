// The seam between the bus and a store: how a consumer's writes run atomically and when they are
// durable. Storage implements it (GroupCommit, CommitEachUnit); the bus sees only this interface.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <stdexcept>

#include "Runtime/Status.h"

namespace messaging {

// Thrown by a store that cannot take work now because another writer holds it (SQLite's write lock
// held by another process). It is no fault of the message or request: the work is run again later,
// without counting an attempt, instead of the thread waiting for the lock.
class StoreBusy : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
    // How long to wait before running work again after it met a busy store `waits` times in a row:
    // 10 ms, doubling up to a second.
    static std::chrono::milliseconds RetryDelay(int waits) {
        return std::min(std::chrono::milliseconds(10 << std::clamp(waits, 0, 7)), std::chrono::milliseconds(1000));
    }
};

// How the bus runs a consumer's work atomically and learns when it is durable.
class UnitOfWork {
  public:
    virtual ~UnitOfWork() = default;
    // Runs `work` atomically: if it throws, its writes are undone and the exception propagates. Throws
    // StoreBusy, without running `work`, when the store is held by another writer.
    virtual void Run(const std::function<void()>& work) = 0;
    // `done` runs on the loop thread once the writes of every unit run so far are committed (OK), or
    // could not be (the error). It never runs inside the caller.
    virtual void AfterCommit(std::function<void(const Status&)> done) = 0;
    // Commits what is pending now (before a read that must see only durable state).
    virtual void Flush() = 0;
    // Runs `work` as a unit at the end of this turn, just before the batch commits, so that work
    // gathered through a turn (rows to delete once the broker confirmed their messages) costs one unit
    // instead of one per event. If it throws, its writes are undone and the error is logged. While the
    // store is busy the work waits, and runs once a batch can be opened.
    virtual void RunBeforeCommit(std::function<void()> work) = 0;
};

}  // namespace messaging
