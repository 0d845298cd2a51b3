// The pieces under the bus: the event loop (posting from threads, timers, signals, clean shutdown),
// the settings loader (.NET-style overrides, unknown keys rejected), topology and in-memory routing,
// and the SQLite wrapper's transactions and group commit.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>

#include "Hosting/Settings.h"
#include "InventoryService/InventorySettings.h"
#include "OrderService/OrderSettings.h"
#include "PaymentService/PaymentSettings.h"
#include "RabbitMq/AckPlan.h"
#include "RabbitMq/RabbitMqTransport.h"
#include "Storage/GroupCommit.h"
#include "Storage/Sqlite.h"
#include "Support/TestSupport.h"
#include "Transport/InMemoryTransport.h"

using namespace messaging;
using namespace std::chrono_literals;
using contracts::Json;

TEST_SUITE("Messaging.EventLoop") {
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
}

TEST_SUITE("Messaging.EventLoop") {
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

TEST_SUITE("Messaging.Settings") {
    const Json kDefaults = Json::parse(
        R"({"RabbitMQ":{"Host":"localhost","Port":5672},"Endpoint":{"Retry":{"Policy":"None"}},"Flag":false})");

    TEST_CASE("The file overrides defaults and the environment overrides the file") {
        test_support::TempDir dir;
        std::ofstream(dir.File("s.json")) << R"({"rabbitmq": {"host": "from-file"}, // comments are allowed
                                                  "Endpoint": {"Retry": {"Policy": "Immediate", "Limit": 2}}})";
        const Json settings = LoadSettingsJson(
            kDefaults,
            {dir.File("s.json"), {"RabbitMQ__Port=5673", "PATH=/bin", "Other__X=1", "Flag=true"}, {"Retry"}});
        CHECK(settings["RabbitMQ"]["Host"] == "from-file");
        CHECK(settings["RabbitMQ"]["Port"] == 5673);
        CHECK(settings["Endpoint"]["Retry"]["Limit"] == 2);
        CHECK(settings["Flag"] == false);  // no "__": not a settings variable
        const Json from_env = LoadSettingsJson(kDefaults, {"", {"rabbitmq__HOST=broker"}, {}});
        CHECK(from_env["RabbitMQ"]["Host"] == "broker");
    }

    TEST_CASE("Unknown keys and wrong types stop the load with the key named") {
        test_support::TempDir dir;
        std::ofstream(dir.File("typo.json")) << R"({"RabbitMQ": {"Hots": "x"}})";
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {dir.File("typo.json"), {}, {}}),
                             doctest::Contains("unknown setting 'RabbitMQ.Hots'"), SettingsError);
        std::ofstream(dir.File("type.json")) << R"({"RabbitMQ": {"Port": "5672"}})";
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {dir.File("type.json"), {}, {}}),
                             doctest::Contains("'RabbitMQ.Port' must be an integer"), SettingsError);
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {"", {"RabbitMQ__Port=abc"}, {}}),
                             doctest::Contains("RabbitMQ__Port must be an integer"), SettingsError);
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {"", {"RabbitMQ__Nope=1"}, {}}),
                             doctest::Contains("unknown setting 'Nope'"), SettingsError);
        CHECK_THROWS_AS(LoadSettingsJson(kDefaults, {dir.File("missing.json"), {}, {}}), SettingsError);
    }

    TEST_CASE("The committed appsettings files load and match the settings structs field for field") {
        const std::string root = SAGA_SOURCE_DIR "/appsettings/";
        const auto order = order_service::OrderSettings::Load(root + "OrderService.json", {});
        CHECK(order.endpoint.queue == "order-service");
        CHECK(order.endpoint.retry.Describe() == "Interval(3, 500ms)");
        CHECK(order.saga.timeout == 300000ms);
        const auto inventory = inventory_service::InventorySettings::Load(root + "InventoryService.json", {});
        CHECK(inventory.endpoint.queue == "inventory-service");
        CHECK(inventory.simulation.shortage_suffixes == "0");
        const auto payment = payment_service::PaymentSettings::Load(root + "PaymentService.json", {});
        CHECK(payment.endpoint.queue == "payment-service");
        CHECK(payment.simulation.gateway_down_suffixes == "2");
        // Field for field: the file holds every key the struct has.
        for (const auto& [file, defaults] : std::vector<std::pair<std::string, Json>>{
                 {"OrderService.json", Json::parse(order_service::OrderSettings{}.ToJson().dump())},
                 {"InventoryService.json", Json::parse(inventory_service::InventorySettings{}.ToJson().dump())},
                 {"PaymentService.json", Json::parse(payment_service::PaymentSettings{}.ToJson().dump())}}) {
            std::ifstream in(root + file);
            const Json committed = Json::parse(in, nullptr, true, true);
            for (auto section = defaults.begin(); section != defaults.end(); ++section) {
                REQUIRE_MESSAGE(committed.contains(section.key()), file << " lacks " << section.key());
                for (auto key = section->begin(); key != section->end(); ++key)
                    CHECK_MESSAGE(committed[section.key()].contains(key.key()),
                                  file << " lacks " << section.key() << "." << key.key());
            }
        }
    }

    TEST_CASE("Environment overrides reach the typed settings") {
        const auto settings = order_service::OrderSettings::Load(
            "", {"RabbitMQ__Host=rabbit", "Http__Port=8080", R"(Endpoint__Retry={"Policy":"Immediate","Limit":1})"});
        CHECK(settings.rabbitmq.host == "rabbit");
        CHECK(settings.http.port == 8080);
        CHECK(settings.endpoint.retry.Describe() == "Immediate(1)");
        CHECK_THROWS_WITH_AS(order_service::OrderSettings::Load("", {"Database__Synchronous=sometimes"}),
                             doctest::Contains("Database.Synchronous"), SettingsError);
        CHECK_THROWS_WITH_AS(order_service::OrderSettings::Load("", {"Http__Port=70000"}), doctest::Contains("'Port'"),
                             SettingsError);
    }
}

TEST_SUITE("Messaging.Topology") {
    TEST_CASE("A receive endpoint declares its queue and exchange and type bindings but not _error or _skipped") {
        const auto topology = ReceiveEndpointTopology("order-service", {contracts::ContractName("OrderSubmitted")});
        CHECK(topology.queues.size() == 1);
        CHECK(std::count(topology.queue_bindings.begin(), topology.queue_bindings.end(),
                         QueueBinding{"order-service", "order-service"}) == 1);
        CHECK(topology.queue_bindings.size() == 1);
        CHECK(std::count(topology.exchange_bindings.begin(), topology.exchange_bindings.end(),
                         ExchangeBinding{"Contracts:OrderSubmitted", "order-service"}) == 1);
        for (const auto& exchange : topology.exchanges) {
            CHECK(exchange.type == "fanout");
            CHECK(exchange.durable);
            CHECK_FALSE(exchange.auto_delete);
        }
        for (const auto& queue : topology.queues) {
            CHECK(queue.durable);
            CHECK_FALSE(queue.exclusive);
            CHECK_FALSE(queue.auto_delete);
        }
    }

    TEST_CASE("In memory: a message reaches each bound queue once - a different re-declare fails") {
        EventLoopThread loop_thread;
        loop_thread.loop().Invoke([&] {
            InMemoryTransport transport(loop_thread.loop());
            Topology topology = QueueWithExchange("q");
            topology.AddExchange("a");
            topology.AddExchange("b");
            topology.BindExchange("a", "q");
            topology.BindExchange("a", "b");
            topology.BindExchange("b", "q");
            REQUIRE(transport.DeclareNow(topology).ok());
            transport.Publish("a", TransportMessage{"x", {}, ""}, nullptr);
            CHECK(transport.ReadyCount("q") == 1);
            Topology conflicting;
            conflicting.exchanges.push_back(ExchangeSpec{"a", "direct"});
            CHECK(transport.DeclareNow(conflicting).code() == StatusCode::kPreconditionFailed);
        });
    }
}

TEST_SUITE("Messaging.Sqlite") {
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
            CHECK(db.checkpointer()->inline_checkpoints() == 0);
            // Without a checkpoint every page would still be in the WAL, the database file near empty.
            CHECK(std::filesystem::file_size(path) > 1000u * blob.size());
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

TEST_SUITE("Messaging.GroupCommit") {
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

TEST_SUITE("Messaging.RabbitMq") {
    TEST_CASE("Acks that settle the oldest deliveries become one multiple-ack - the rest go one by one") {
        const std::set<std::uint64_t> unsettled{3, 4, 5, 6, 9};
        auto plan = PlanAcks(unsettled, {5, 3, 4});
        CHECK(plan.multiple_up_to == 5);
        CHECK(plan.single.empty());
        plan = PlanAcks(unsettled, {4, 6});  // 3 is still being handled: a multiple-ack would settle it
        CHECK(plan.multiple_up_to == 0);
        CHECK(plan.single == std::vector<std::uint64_t>{4, 6});
        plan = PlanAcks(unsettled, {3, 9});  // a run of one is a plain ack
        CHECK(plan.multiple_up_to == 0);
        CHECK(plan.single == std::vector<std::uint64_t>{3, 9});
        plan = PlanAcks(unsettled, {9, 4, 3, 3});
        CHECK(plan.multiple_up_to == 4);
        CHECK(plan.single == std::vector<std::uint64_t>{9});
    }
    TEST_CASE("A peer that takes the connection but never answers never blocks the loop - the handshake gives up") {
        // A listening socket nobody accepts from: the kernel completes the TCP handshake, and no
        // connection.start ever comes.
        const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(listener >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(listener, 4) == 0);
        socklen_t length = sizeof address;
        REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);

        RabbitMqSettings settings;
        settings.host = "127.0.0.1";
        settings.port = ntohs(address.sin_port);
        settings.username = settings.password = "guest";
        settings.connection_timeout_seconds = 1;
        EventLoopThread loop_thread;
        std::unique_ptr<RabbitMqTransport> transport;
        const auto begin = std::chrono::steady_clock::now();
        REQUIRE(loop_thread.loop().Invoke([&] {
            transport = std::make_unique<RabbitMqTransport>(loop_thread.loop(), settings, "silent-peer");
            return transport->Start().ok();
        }));
        // While the handshake waits, the loop answers every hand-over at once.
        std::chrono::milliseconds slowest{0};
        while (std::chrono::steady_clock::now() - begin < 800ms) {
            const auto asked = std::chrono::steady_clock::now();
            const auto answered = loop_thread.loop().InvokeFor([] { return true; }, 1000ms);
            REQUIRE(answered.has_value());
            slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - asked));
        }
        CHECK(slowest < 100ms);
        // After the connection timeout the attempt is given up, said why, and retried in the background.
        std::string error;
        CHECK(test_support::WaitFor(
            [&] {
                error = loop_thread.loop().Invoke([&] { return transport->last_error(); });
                return !error.empty();
            },
            5s));
        CHECK_MESSAGE(error.find("no AMQP handshake within 1 s") != std::string::npos, error);
        CHECK_FALSE(loop_thread.loop().Invoke([&] { return transport->IsConnected(); }));
        ::close(listener);
        loop_thread.loop().Invoke([&] { transport.reset(); });
    }
}
