// Group commit for a service's SQLite database: every unit of work run on one turn of the event loop
// (a consumed message, an HTTP request) joins one transaction that is committed once, right after the
// turn, so a batch of deliveries costs one commit and, with synchronous=FULL, one fsync. What must wait
// for durability (publishing, acking, answering) waits on AfterCommit.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <vector>

#include "Metrics/MetricsRegistry.h"
#include "Runtime/EventLoop.h"
#include "Runtime/Status.h"
#include "Runtime/UnitOfWork.h"
#include "Storage/Sqlite.h"

namespace messaging {

// Database.GroupCommit false: a unit is just a call, and its own transactions commit as they go.
class CommitEachUnit : public UnitOfWork {
  public:
    explicit CommitEachUnit(EventLoop& loop) : loop_(loop) {}
    ~CommitEachUnit() override { *alive_ = false; }
    void Run(const std::function<void()>& work) override { work(); }
    void AfterCommit(std::function<void(const Status&)> done) override;
    void Flush() override {}
    void RunBeforeCommit(std::function<void()> work) override;

  private:
    EventLoop& loop_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// What a group commit records: units per committed batch, the COMMIT's duration (its fsync, with
// synchronous=FULL) and failed commits. Series of one service's registry; none when metrics are off.
struct CommitMetrics {
    metrics::Histogram* batch_units = nullptr;
    metrics::Histogram* duration_seconds = nullptr;
    metrics::Counter* failures = nullptr;
};
// The series on `registry` labelled with `service`; empty when `registry` is null.
CommitMetrics CommitMetricsOn(metrics::MetricsRegistry* registry, const std::string& service);

class GroupCommit : public UnitOfWork {
  public:
    // A batch is committed at the end of the loop turn that opened it, or as soon as it holds
    // `max_units` units.
    GroupCommit(EventLoop& loop, SqliteDatabase& db, std::size_t max_units = 512, CommitMetrics metrics = {});
    ~GroupCommit() override;  // commits what is open
    GroupCommit(const GroupCommit&) = delete;
    GroupCommit& operator=(const GroupCommit&) = delete;

    // Each unit runs inside a savepoint of the open batch (BEGIN IMMEDIATE when none is open; StoreBusy
    // when another connection holds the write lock).
    void Run(const std::function<void()>& work) override;
    void AfterCommit(std::function<void(const Status&)> done) override;
    // Commits the open batch now and runs its AfterCommit callbacks.
    void Flush() override;
    // Opens a batch if none is open; `work` runs inside it right before its COMMIT.
    void RunBeforeCommit(std::function<void()> work) override;

    std::size_t batches_committed() const { return batches_committed_; }
    std::size_t units_committed() const { return units_committed_; }

  private:
    void Open();
    // Opens a batch for the work waiting to run before a commit; while the database is busy, tries
    // again on a timer, each time a little later (StoreBusy::RetryDelay).
    void OpenForWaitingWork();
    void RunInSavepoint(const std::function<void()>& work);
    Status Commit();                         // ends the open batch; the waiters are the caller's to notify
    void NotifyLater(const Status& status);  // tells every waiter of `status` on a later turn

    EventLoop& loop_;
    SqliteDatabase& db_;
    std::size_t max_units_;
    bool open_ = false;
    // Deferred work runs after the events of this turn (every frame read from the socket, every HTTP
    // request already handed over), so one batch gathers all of them.
    EndOfTurnTask flush_at_turn_end_;
    std::size_t units_ = 0;
    std::vector<std::function<void(const Status&)>> waiting_;
    std::vector<std::function<void()>> before_commit_;
    Timer busy_retry_;
    int busy_waits_ = 0;  // tries in a row that found the database busy
    std::size_t batches_committed_ = 0;
    std::size_t units_committed_ = 0;
    CommitMetrics metrics_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// A GroupCommit on `db` recording into `metrics`, or a CommitEachUnit when `group_commit` is false.
std::unique_ptr<UnitOfWork> MakeUnitOfWork(EventLoop& loop, SqliteDatabase& db, bool group_commit,
                                           CommitMetrics metrics = {});

}  // namespace messaging
