#include "Storage/GroupCommit.h"

#include <spdlog/spdlog.h>

namespace messaging {
namespace {

// Tells `done` of `status` on a later turn of the loop, unless its owner (`alive`) is gone by then.
void PostStatus(EventLoop& loop, const std::shared_ptr<bool>& alive, std::function<void(const Status&)> done,
                Status status) {
    loop.Post([alive = std::weak_ptr<bool>(alive), done = std::move(done), status = std::move(status)] {
        if (!alive.expired()) done(status);
    });
}

// Runs work handed to RunBeforeCommit: its failure is logged, not thrown at whoever committed.
template <typename Run>
void LogFailureOf(const Run& run) {
    try {
        run();
    } catch (const std::exception& e) {
        spdlog::warn("work run before a commit failed and was undone: {}", e.what());
    }
}

}  // namespace

void CommitEachUnit::AfterCommit(std::function<void(const Status&)> done) {
    PostStatus(loop_, alive_, std::move(done), Status::Ok());
}

void CommitEachUnit::RunBeforeCommit(std::function<void()> work) {
    // No batch to join: the work runs at the end of the turn, its statements committing as they go.
    loop_.Defer([alive = std::weak_ptr<bool>(alive_), work = std::move(work)] {
        if (!alive.expired()) LogFailureOf(work);
    });
}

CommitMetrics CommitMetricsOn(metrics::MetricsRegistry* registry, const std::string& service) {
    if (!registry) return {};
    const metrics::Labels labels{{"service", service}};
    return CommitMetrics{
        .batch_units = &registry
                            ->HistogramFamily("db_commit_batch_units",
                                              "Units of work (consumed messages, HTTP requests) committed by one "
                                              "group-commit transaction",
                                              {1, 2, 4, 8, 16, 32, 64, 128, 256, 512})
                            .With(labels),
        .duration_seconds =
            &registry
                 ->HistogramFamily("db_commit_duration_seconds",
                                   "Time the database took to COMMIT a group-commit transaction",
                                   {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5})
                 .With(labels),
        .failures =
            &registry->CounterFamily("db_commit_failures_total", "Group-commit transactions that failed").With(labels)};
}

std::unique_ptr<UnitOfWork> MakeUnitOfWork(EventLoop& loop, SqliteDatabase& db, bool group_commit,
                                           CommitMetrics metrics) {
    if (group_commit) return std::make_unique<GroupCommit>(loop, db, 512, metrics);
    return std::make_unique<CommitEachUnit>(loop);
}

GroupCommit::GroupCommit(EventLoop& loop, SqliteDatabase& db, std::size_t max_units, CommitMetrics metrics)
    : loop_(loop),
      db_(db),
      max_units_(max_units == 0 ? 1 : max_units),
      flush_at_turn_end_(loop, [this] { Flush(); }),
      busy_retry_(loop),
      metrics_(metrics) {}

GroupCommit::~GroupCommit() {
    *alive_ = false;
    if (!open_) return;
    // Whoever waits on the callbacks is being torn down too; the writes themselves are kept.
    waiting_.clear();
    try {
        Flush();
    } catch (...) {
    }
}

void GroupCommit::Open() {
    db_.Prepare("BEGIN IMMEDIATE").Run();
    open_ = true;
    units_ = 0;
    flush_at_turn_end_.Request();
}

void GroupCommit::Run(const std::function<void()>& work) {
    if (open_ && units_ >= max_units_) {
        // A full batch commits now; its waiters hear of it after this unit, not inside it.
        NotifyLater(Commit());
    }
    if (!open_) Open();
    RunInSavepoint(work);
}

void GroupCommit::RunInSavepoint(const std::function<void()>& work) {
    db_.Prepare("SAVEPOINT unit_of_work").Run();
    try {
        work();
    } catch (...) {
        if (sqlite3_get_autocommit(db_.raw())) {
            // SQLite rolled the whole batch back (an I/O error, a full disk): every unit in it is lost,
            // so every unit waiting on it fails and its message comes back.
            open_ = false;
            NotifyLater(Status::Internal("the database rolled the batch back"));
        } else {
            db_.Prepare("ROLLBACK TO unit_of_work").Run();
            db_.Prepare("RELEASE unit_of_work").Run();
        }
        throw;
    }
    db_.Prepare("RELEASE unit_of_work").Run();
    ++units_;
}

void GroupCommit::RunBeforeCommit(std::function<void()> work) {
    before_commit_.push_back(std::move(work));
    OpenForWaitingWork();
}

void GroupCommit::OpenForWaitingWork() {
    if (open_ || before_commit_.empty() || busy_retry_.IsActive()) return;
    try {
        Open();
        busy_waits_ = 0;
    } catch (const StoreBusy& e) {
        const auto delay = StoreBusy::RetryDelay(busy_waits_++);
        spdlog::debug("work waiting for a commit waits {} ms more: {}", delay.count(), e.what());
        busy_retry_.Start(delay, [this] { OpenForWaitingWork(); });
    }
}

void GroupCommit::AfterCommit(std::function<void(const Status&)> done) {
    if (open_) {
        waiting_.push_back(std::move(done));
        return;
    }
    PostStatus(loop_, alive_, std::move(done), Status::Ok());
}

void GroupCommit::NotifyLater(const Status& status) {
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& done : waiting) PostStatus(loop_, alive_, std::move(done), status);
}

void GroupCommit::Flush() {
    if (!open_) return;
    const Status status = Commit();
    auto waiting = std::move(waiting_);
    waiting_.clear();
    for (auto& done : waiting) done(status);
}

Status GroupCommit::Commit() {
    auto before_commit = std::move(before_commit_);
    before_commit_.clear();
    for (std::size_t i = 0; i < before_commit.size(); ++i) {
        if (!open_) {
            // An earlier one lost the whole batch (its waiters have been told): the rest wait for the
            // next batch instead of being dropped.
            before_commit_.assign(std::make_move_iterator(before_commit.begin() + static_cast<std::ptrdiff_t>(i)),
                                  std::make_move_iterator(before_commit.end()));
            break;
        }
        LogFailureOf([&] { RunInSavepoint(before_commit[i]); });
    }
    if (!open_) return Status::Internal("the database rolled the batch back");
    open_ = false;
    Status status = Status::Ok();
    try {
        const auto started = std::chrono::steady_clock::now();
        db_.Prepare("COMMIT").Run();
        db_.RecordCommitted();
        ++batches_committed_;
        units_committed_ += units_;
        if (metrics_.batch_units) {
            metrics_.batch_units->Observe(static_cast<double>(units_));
            metrics_.duration_seconds->Observe(
                std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        }
    } catch (const std::exception& e) {
        if (metrics_.failures) metrics_.failures->Add();
        status = Status::Internal(std::string("commit failed: ") + e.what());
        spdlog::error("SQLite group commit of {} unit(s) failed: {}", units_, e.what());
        if (!sqlite3_get_autocommit(db_.raw())) {
            try {
                db_.Prepare("ROLLBACK").Run();
            } catch (...) {
            }
        }
    }
    units_ = 0;
    return status;
}

}  // namespace messaging
