// Storage: the SQLite wrapper, its transactions, the WAL checkpointer, group commit and the database's health.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>

#include "Storage/GroupCommit.h"
#include "Storage/Sqlite.h"
#include "Support/Waiting.h"

using namespace messaging;
using namespace std::chrono_literals;

TEST_SUITE("Storage.Sqlite") {
    TEST_CASE("A transaction rolls back unless committed - statements are reused") {
        SqliteDatabase db(":memory:");
        db.Execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)");
        {
            Transaction transaction(db);
            db.Prepare("INSERT INTO t VALUES (?1, ?2)").Bind(1, "a").Bind(2, 1).Run();
        }
        auto& count = db.Prepare("SELECT COUNT(*) FROM t");
        REQUIRE(count.Step());
        CHECK(count.Integer(0) == 0);
        {
            Transaction transaction(db);
            db.Prepare("INSERT INTO t VALUES (?1, ?2)").Bind(1, "a").Bind(2, 1).Run();
            transaction.Commit();
        }
        auto& again = db.Prepare("SELECT COUNT(*) FROM t");
        CHECK(&again == &count);
        REQUIRE(again.Step());
        CHECK(again.Integer(0) == 1);
        CHECK_THROWS_AS(db.Prepare("INSERT INTO t VALUES (?1, ?2)").Bind(1, "a").Bind(2, 2).Run(), SqliteError);
        CHECK_THROWS_AS(db.Prepare("SELECT nope FROM t"), SqliteError);
    }

    TEST_CASE("Text bound without a copy is stored as given - an empty view as an empty string") {
        SqliteDatabase db(":memory:");
        db.Execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)");
        {
            std::string large(4000, 'x');
            db.Prepare("INSERT INTO t VALUES (?1, ?2)").Bind(1, 1).BindUnowned(2, large).Run();
            large.assign(4000, 'y');  // after Run(): SQLite holds its own copy of the row
        }
        db.Prepare("INSERT INTO t VALUES (?1, ?2)").Bind(1, 2).BindUnowned(2, std::string_view{}).Run();
        auto& rows = db.Prepare("SELECT v, v IS NULL FROM t ORDER BY k");
        REQUIRE(rows.Step());
        CHECK(rows.Text(0) == std::string(4000, 'x'));
        REQUIRE(rows.Step());
        CHECK(rows.Integer(1) == 0);  // not NULL
        CHECK(rows.Text(0).empty());
        rows.Reset();
    }

    TEST_CASE("Schema steps run once each and in order - a database from a newer build is refused") {
        SqliteDatabase db(":memory:");
        MigrateSchema(db, "Tester", {"CREATE TABLE a (x)"});
        CHECK(db.UserVersion() == 1);
        // Step 1 again would fail (the table exists): only the new step runs.
        MigrateSchema(db, "Tester", {"CREATE TABLE a (x)", "CREATE TABLE b (y)"});
        CHECK(db.UserVersion() == 2);
        CHECK_THROWS_WITH_AS(MigrateSchema(db, "Tester", {"CREATE TABLE a (x)"}),
                             doctest::Contains("(version 2) is newer than this Tester understands (1)"), SqliteError);
        // A step that fails leaves the version, and the schema, as they were.
        CHECK_THROWS_AS(MigrateSchema(db, "Tester",
                                      {"CREATE TABLE a (x)", "CREATE TABLE b (y)",
                                       "CREATE TABLE c (z); "
                                       "CREATE TABLE a (z)"}),
                        SqliteError);
        CHECK(db.UserVersion() == 2);
        auto& tables = db.Prepare("SELECT count(*) FROM sqlite_master WHERE name = 'c'");
        REQUIRE(tables.Step());
        CHECK(tables.Integer(0) == 0);
        tables.Reset();
    }

    TEST_CASE("SQLite keeps no memory statistics - their mutex was taken on every allocation") {
        SqliteDatabase db(":memory:");
        db.Execute("CREATE TABLE t (v TEXT)");
        db.Prepare("INSERT INTO t VALUES (?1)").Bind(1, std::string(10000, 'x')).Run();
        CHECK(sqlite3_memory_used() == 0);  // counted only while the statistics are on
    }

    TEST_CASE("Handle owners that outlive their loop leave its freed handles alone") {
        auto loop = std::make_unique<EventLoop>();
        auto timer = std::make_unique<Timer>(*loop);
        bool fired = false;
        timer->Start(std::chrono::milliseconds(50), [&] { fired = true; });
        SignalWatcher watcher(*loop, SIGUSR2, [] {});
        loop.reset();  // closes and frees every handle still open, the timer's included
        CHECK_THROWS_AS(timer->Start(std::chrono::milliseconds(1), [] {}), std::logic_error);
        timer->Stop();
        timer.reset();  // before: a use of the memory the loop had freed
        CHECK_FALSE(fired);
    }

    TEST_CASE("WAL checkpoints run on a thread of their own - the writer never runs one - and every row survives") {
        test_support::TempDir dir;
        const std::string path = dir.File("wal.db");
        const std::string blob(3000, 'x');  // about a page per row, so each commit adds WAL frames
        int rows = 0;
        {
            SqliteDatabase db(path);
            REQUIRE(db.checkpointer() != nullptr);
            db.Execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
            // Well past the 1,000 frames that start a checkpoint, well short of the writer's own limit.
            for (; rows < 3 * WalCheckpointer::kStartFrames; ++rows)
                db.Prepare("INSERT INTO t VALUES (?1, ?2)").Bind(1, rows).Bind(2, blob).Run();
            REQUIRE(test_support::WaitFor([&] { return db.checkpointer()->background_checkpoints() > 0; }));
            // Without a checkpoint every page would still be in the WAL, the database file near empty. A
            // checkpoint that ran while rows were still being written copied only the frames it saw, so
            // wait for the thread to catch up rather than read the size once.
            CHECK(test_support::WaitFor([&] { return std::filesystem::file_size(path) > 1000u * blob.size(); }));
            CHECK(db.checkpointer()->inline_checkpoints() == 0);
        }
        SqliteDatabase reopened(path);
        auto& count = reopened.Prepare("SELECT COUNT(*), SUM(length(v)) FROM t");
        REQUIRE(count.Step());
        CHECK(count.Integer(0) == rows);
        CHECK(count.Integer(1) == static_cast<std::int64_t>(rows) * static_cast<std::int64_t>(blob.size()));
        count.Reset();
        CHECK(SqliteDatabase(":memory:").checkpointer() == nullptr);
    }

    TEST_CASE("A WAL past the thread's reach is checkpointed by the writer itself") {
        test_support::TempDir dir;
        const std::string path = dir.File("pinned.db");
        SqliteDatabase db(path);
        REQUIRE(db.checkpointer() != nullptr);
        db.Execute("CREATE TABLE t (k INTEGER PRIMARY KEY)");
        // A reader that keeps its snapshot stops any checkpoint short of the end, so the WAL grows.
        SqliteDatabase reader(path);
        reader.Execute("BEGIN");
        auto& pinned = reader.Prepare("SELECT COUNT(*) FROM t");
        REQUIRE(pinned.Step());
        for (int k = 0; k < WalCheckpointer::kInlineFrames + 500; ++k)
            db.Prepare("INSERT INTO t VALUES (?1)").Bind(1, k).Run();
        CHECK(db.checkpointer()->inline_checkpoints() > 0);
        pinned.Reset();
        reader.Execute("COMMIT");
    }

    TEST_CASE("Inside an open transaction a Transaction is a savepoint - rolled back alone") {
        SqliteDatabase db(":memory:");
        db.Execute("CREATE TABLE t (k TEXT PRIMARY KEY)");
        Transaction outer(db);
        db.Prepare("INSERT INTO t VALUES (?1)").Bind(1, "kept").Run();
        {
            Transaction inner(db);
            db.Prepare("INSERT INTO t VALUES (?1)").Bind(1, "undone").Run();
        }
        {
            Transaction inner(db);
            db.Prepare("INSERT INTO t VALUES (?1)").Bind(1, "released").Run();
            inner.Commit();
        }
        outer.Commit();
        auto& keys = db.Prepare("SELECT group_concat(k, ',') FROM (SELECT k FROM t ORDER BY k)");
        REQUIRE(keys.Step());
        CHECK(keys.Text(0) == "kept,released");
        keys.Reset();
    }
}

TEST_SUITE("Storage.GroupCommit") {
    // Counts the rows of `t` through a second connection: what is committed, not what is pending.
    std::int64_t CommittedRows(const std::string& path) {
        SqliteDatabase reader(path);
        auto& count = reader.Prepare("SELECT COUNT(*) FROM t");
        count.Step();
        const auto rows = count.Integer(0);
        count.Reset();
        return rows;
    }

    // The keys of `t` in order, comma-separated, as `db` sees them.
    std::string Keys(SqliteDatabase & db) {
        auto& keys = db.Prepare("SELECT group_concat(k, ',') FROM (SELECT k FROM t ORDER BY k)");
        REQUIRE(keys.Step());
        std::string text = keys.Text(0);
        keys.Reset();
        return text;
    }

    // A database with `schema` and a GroupCommit on it, owned by a loop thread; both are closed on it.
    // The GroupCommit tests run as its fixture (or a subclass's), so their bodies name its members.
    struct GroupCommitRig {
        explicit GroupCommitRig(const std::string& schema = "CREATE TABLE t (k INTEGER PRIMARY KEY)",
                                std::size_t max_units = 512)
            : path(dir.File("group.db")), loop(loop_thread.loop()), db(std::make_unique<SqliteDatabase>(path)) {
            db->Execute(schema);
            group = loop.Invoke([&] { return std::make_unique<GroupCommit>(loop, *db, max_units); });
        }
        ~GroupCommitRig() {
            loop.Invoke([&] {
                group.reset();
                db.reset();
            });
        }
        test_support::TempDir dir;
        const std::string path;
        EventLoopThread loop_thread;
        EventLoop& loop;
        std::unique_ptr<SqliteDatabase> db;
        std::unique_ptr<GroupCommit> group;
    };

    // Commits on its own once two units are pending.
    struct TwoUnitBatchRig : GroupCommitRig {
        TwoUnitBatchRig() : GroupCommitRig("CREATE TABLE t (k INTEGER PRIMARY KEY)", /*max_units=*/2) {}
    };

    // A deferred foreign key is checked at COMMIT: a dangling child makes the commit itself fail.
    struct DeferredForeignKeyRig : GroupCommitRig {
        DeferredForeignKeyRig()
            : GroupCommitRig(
                  "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
                  "CREATE TABLE t (k INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY "
                  "DEFERRED)") {}
    };

    TEST_CASE_FIXTURE(GroupCommitRig, "The units of one loop turn share one commit - their callbacks run after it") {
        std::promise<std::vector<std::int64_t>> seen_promise;
        auto seen_future = seen_promise.get_future();
        loop.Invoke([&] {
            auto seen = std::make_shared<std::vector<std::int64_t>>();
            for (int i = 0; i < 3; ++i) {
                group->Run([&] { db->Prepare("INSERT INTO t VALUES (?1)").Bind(1, i).Run(); });
                group->AfterCommit([&, seen, i](const Status& status) {
                    CHECK(status.ok());
                    seen->push_back(CommittedRows(path));
                    if (i == 2) seen_promise.set_value(*seen);
                });
            }
            CHECK(CommittedRows(path) == 0);  // nothing is committed inside the turn
        });
        REQUIRE(seen_future.wait_for(10s) == std::future_status::ready);
        CHECK(seen_future.get() == std::vector<std::int64_t>{3, 3, 3});
        CHECK(loop.Invoke([&] { return group->batches_committed(); }) == 1);
        CHECK(loop.Invoke([&] { return group->units_committed(); }) == 3);
    }

    TEST_CASE_FIXTURE(GroupCommitRig,
                      "Another process's write lock - a unit throws StoreBusy at once - work before a commit waits") {
        loop.Invoke([&] { db->SetBusyTimeout(0ms); });
        // Another process takes the write lock.
        sqlite3* other = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &other) == SQLITE_OK);
        REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
        std::atomic<bool> ran{false};
        loop.Invoke([&] {
            // Thrown without waiting for the lock (a wait would be the busy timeout, five seconds).
            CHECK_THROWS_AS(group->Run([&] { db->Prepare("INSERT INTO t VALUES (1)").Run(); }), StoreBusy);
            group->RunBeforeCommit([&] {
                db->Prepare("INSERT INTO t VALUES (2)").Run();
                ran = true;
            });
        });
        // It waits while the lock is held (the loop keeps turning), and runs and commits once it is freed.
        CHECK(loop.Invoke([] { return 1; }) == 1);
        CHECK_FALSE(ran);
        sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
        sqlite3_close(other);
        REQUIRE(test_support::WaitFor([&] { return ran.load() && CommittedRows(path) == 1; }));
    }

    TEST_CASE_FIXTURE(TwoUnitBatchRig,
                      "A unit that throws is undone alone - a full batch commits before the next unit") {
        loop.Invoke([&] {
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (1)").Run(); });
            CHECK_THROWS_AS(group->Run([&] {
                db->Prepare("INSERT INTO t VALUES (2)").Run();
                db->Prepare("INSERT INTO t VALUES (1)").Run();  // duplicate key: the unit fails
            }),
                            SqliteError);
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (3)").Run(); });
            CHECK(CommittedRows(path) == 0);
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (4)").Run(); });  // the batch held 2: committed first
            CHECK(CommittedRows(path) == 2);
            CHECK(group->batches_committed() == 1);
            group->Flush();
            CHECK(CommittedRows(path) == 3);
        });
        CHECK(Keys(*db) == "1,3,4");
    }

    TEST_CASE_FIXTURE(DeferredForeignKeyRig,
                      "A batch whose COMMIT fails is rolled back - every unit in it hears the error") {
        std::promise<std::vector<std::string>> heard_promise;
        auto heard_future = heard_promise.get_future();
        loop.Invoke([&] {
            auto heard = std::make_shared<std::vector<std::string>>();
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (1, NULL)").Run(); });
            group->AfterCommit([heard](const Status& status) { heard->push_back(status.ToString()); });
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (2, 42)").Run(); });  // no parent 42
            group->AfterCommit([&, heard](const Status& status) {
                heard->push_back(status.ToString());
                heard_promise.set_value(*heard);
            });
        });
        REQUIRE(heard_future.wait_for(10s) == std::future_status::ready);
        const auto heard = heard_future.get();
        REQUIRE(heard.size() == 2);
        CHECK(heard[0].find("commit failed") != std::string::npos);
        CHECK(heard[1] == heard[0]);
        CHECK(CommittedRows(path) == 0);
        // The connection is usable again: the next batch commits.
        loop.Invoke([&] {
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (3, NULL)").Run(); });
            group->Flush();
        });
        CHECK(CommittedRows(path) == 1);
    }

    TEST_CASE_FIXTURE(
        GroupCommitRig,
        "Work run before the commit joins the turn's batch last - a failing one undoes only its own writes") {
        std::promise<std::int64_t> rows_promise;
        auto rows_future = rows_promise.get_future();
        auto order = std::make_shared<std::vector<std::string>>();
        loop.Invoke([&] {
            group->RunBeforeCommit([&, order] {
                order->push_back("before-commit");
                db->Prepare("INSERT INTO t VALUES (10)").Run();
            });
            group->RunBeforeCommit([&] {
                db->Prepare("INSERT INTO t VALUES (11)").Run();
                db->Prepare("INSERT INTO t VALUES (10)").Run();  // duplicate key: this work fails
            });
            group->Run([&, order] {
                order->push_back("unit");
                db->Prepare("INSERT INTO t VALUES (1)").Run();
            });
            group->AfterCommit([&](const Status& status) {
                CHECK(status.ok());
                rows_promise.set_value(CommittedRows(path));
            });
            CHECK(CommittedRows(path) == 0);
        });
        REQUIRE(rows_future.wait_for(10s) == std::future_status::ready);
        CHECK(rows_future.get() == 2);
        CHECK(*order == std::vector<std::string>{"unit", "before-commit"});
        CHECK(loop.Invoke([&] { return group->batches_committed(); }) == 1);
        CHECK(Keys(*db) == "1,10");
    }

    TEST_CASE_FIXTURE(GroupCommitRig,
                      "Work left behind when an earlier one lost the whole batch runs with the next batch") {
        loop.Invoke([&] {
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (1)").Run(); });
            group->RunBeforeCommit([&] {
                db->Execute("ROLLBACK");  // as SQLite does on an I/O error: the whole batch is gone
                throw std::runtime_error("the batch is lost");
            });
            group->RunBeforeCommit([&] { db->Prepare("INSERT INTO t VALUES (20)").Run(); });
            // Committed here, not left to the end of the turn: the loop may run the next Invoke first.
            group->Flush();
        });
        // That batch was lost; the second work waits for the next one.
        CHECK(loop.Invoke([&] { return CommittedRows(path); }) == 0);
        loop.Invoke([&] {
            group->Run([&] { db->Prepare("INSERT INTO t VALUES (2)").Run(); });
            group->Flush();
        });
        CHECK(Keys(*db) == "2,20");
    }

    TEST_CASE("With no batch open AfterCommit still answers later - never inside the caller") {
        EventLoopThread loop_thread;
        auto& loop = loop_thread.loop();
        SqliteDatabase db(":memory:");
        for (bool grouped : {true, false}) {
            auto unit_of_work = loop.Invoke([&] { return MakeUnitOfWork(loop, db, grouped); });
            std::promise<bool> answered_inside;
            auto future = answered_inside.get_future();
            loop.Invoke([&] {
                auto returned = std::make_shared<bool>(false);
                unit_of_work->AfterCommit([&answered_inside, returned](const Status& status) {
                    CHECK(status.ok());
                    answered_inside.set_value(!*returned);
                });
                *returned = true;
            });
            REQUIRE(future.wait_for(10s) == std::future_status::ready);
            CHECK_FALSE(future.get());
            loop.Invoke([&] { unit_of_work.reset(); });
        }
    }
}

TEST_SUITE("Storage.Health") {
    // A constraint error is no fault of the database: it changes nothing.
    void RecordConstraint(StoreHealthRecord & record) {
        record.RecordFailure(SQLITE_CONSTRAINT_PRIMARYKEY, "UNIQUE constraint failed: t.k");
    }

    TEST_CASE("A full database is failing until a commit and the fault hold - a constraint error is no fault of it") {
        test_support::TempDir dir;
        SqliteDatabase db(dir.File("health.db"));
        db.SetFaultHold(2s);
        db.Execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)");
        CHECK(db.Health().provider == "sqlite");
        CHECK(db.Health().state == StoreState::kOk);
        db.Prepare("INSERT INTO t VALUES (1, NULL)").Run();
        CHECK_THROWS_AS(db.Prepare("INSERT INTO t VALUES (1, NULL)").Run(), SqliteError);  // duplicate key
        CHECK(db.Health().state == StoreState::kOk);
        // The file may grow no further, as on a full disk.
        db.Execute("PRAGMA max_page_count = 1");
        {
            Transaction transaction(db);
            CHECK_THROWS_AS(db.Prepare("INSERT INTO t VALUES (2, zeroblob(100000))").Run(), SqliteError);
        }
        CHECK(db.Health().state == StoreState::kFailing);
        CHECK(db.Health().detail == "database or disk is full");
        // A read works, but says nothing of writes: still failing.
        auto& count = db.Prepare("SELECT COUNT(*) FROM t");
        REQUIRE(count.Step());
        count.Reset();
        CHECK(db.Health().state == StoreState::kFailing);
        // A write that fits commits, but the fault is too recent to call the database mended.
        db.Execute("PRAGMA max_page_count = 1073741823");
        {
            Transaction transaction(db);
            db.Prepare("INSERT INTO t VALUES (2, zeroblob(100000))").Run();
            transaction.Commit();
        }
        CHECK(db.Health().state == StoreState::kFailing);
        // The hold passes with nothing refused: ok.
        CHECK(test_support::WaitFor([&] { return db.Health().state == StoreState::kOk; }, 10s));
        CHECK(db.Health().detail.empty());
    }

    TEST_CASE("A failing database stays failing past its hold until something commits") {
        StoreHealthRecord record;
        record.set_fault_hold(0ms);
        record.RecordFailure(SQLITE_IOERR_WRITE, "disk I/O error");
        CHECK(record.Now().state == StoreState::kFailing);
        // Locked out meanwhile: still failing, for the same reason.
        record.RecordFailure(SQLITE_BUSY, "database is locked");
        RecordConstraint(record);
        CHECK(record.Now().state == StoreState::kFailing);
        CHECK(record.Now().detail == "disk I/O error");
        record.RecordCommitted();
        CHECK(record.Now().state == StoreState::kOk);
        CHECK(record.Now().detail.empty());
    }

    TEST_CASE("Busy while another connection holds the write lock - ok once it is let go") {
        test_support::TempDir dir;
        const std::string path = dir.File("busy.db");
        SqliteDatabase db(path);
        db.Execute("CREATE TABLE t (k INTEGER PRIMARY KEY)");
        db.SetBusyTimeout(0ms);
        sqlite3* other = nullptr;
        REQUIRE(sqlite3_open(path.c_str(), &other) == SQLITE_OK);
        REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
        CHECK_THROWS_AS(Transaction{db}, StoreBusy);
        CHECK(db.Health().state == StoreState::kBusy);
        CHECK(db.Health().detail == "another connection holds the write lock: database is locked");
        // Asked again while it is held, it is still busy; once it is let go, ok without a write of ours.
        CHECK(db.CheckHealth().state == StoreState::kBusy);
        sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
        sqlite3_close(other);
        CHECK(db.Health().state == StoreState::kBusy);
        CHECK(db.CheckHealth().state == StoreState::kOk);
        CHECK(db.CheckHealth().detail.empty());
        {
            Transaction transaction(db);
            db.Prepare("INSERT INTO t VALUES (1)").Run();
            transaction.Commit();
        }
        CHECK(db.Health().state == StoreState::kOk);
    }
}
