// OrderService's SQLite repository on its own: schema versioning, saga rows with the version check,
// the orders table, the outbox and the ids of applied messages.
#include <doctest/doctest.h>

#include "OrderService/OrderRepository.h"
#include "Support/TestSupport.h"

using namespace contracts::literals;

using namespace order_service;
using namespace contracts;

namespace {

OrderSagaInstance Instance(const std::string& id) {
    OrderSagaInstance instance;
    instance.order_id = contracts::OrderId::Parse(id).value();
    instance.state = OrderState::kSubmitted;
    instance.customer_number = "C";
    instance.total_amount = *Decimal::Parse("10.50");
    instance.items = {{"SKU", 1, *Decimal::Parse("10.50")}};
    instance.timeout_token = "t1";
    instance.timeout_due_ms = 1234;
    instance.created_at = instance.updated_at = *ParseIso8601("2026-01-01T00:00:00Z");
    return instance;
}

}  // namespace

TEST_SUITE("OrderService.Repository") {
    TEST_CASE("The schema is created once and versioned") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository first(db);
        CHECK(db.UserVersion() == OrderRepository::kSchemaVersion);
        OrderRepository again(db);  // no error: migrations are not re-run
        db.SetUserVersion(99);
        CHECK_THROWS_WITH(OrderRepository{db}, doctest::Contains("newer than this OrderService"));
    }

    TEST_CASE("A version 1 database migrates to the current version and keeps its sagas") {
        messaging::SqliteDatabase db(":memory:");
        // The version 1 schema as it shipped, with one saga row and one inbox row.
        db.Execute(R"sql(
            CREATE TABLE order_saga (correlation_id TEXT PRIMARY KEY, current_state TEXT NOT NULL,
                version INTEGER NOT NULL, customer_number TEXT NOT NULL, total_amount TEXT NOT NULL,
                items TEXT NOT NULL, reason TEXT NOT NULL, timeout_token TEXT NOT NULL, timeout_due_ms INTEGER,
                stock_released INTEGER NOT NULL, transaction_id TEXT NOT NULL, created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL);
            CREATE INDEX order_saga_timeouts ON order_saga(timeout_due_ms) WHERE timeout_due_ms IS NOT NULL;
            CREATE TABLE orders (order_id TEXT PRIMARY KEY, status TEXT NOT NULL, reason TEXT NOT NULL,
                customer_number TEXT NOT NULL, total_amount TEXT NOT NULL, items TEXT NOT NULL,
                transaction_id TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
            CREATE TABLE outbox (sequence INTEGER PRIMARY KEY AUTOINCREMENT, exchange TEXT NOT NULL,
                routing_key TEXT NOT NULL, properties TEXT NOT NULL, body TEXT NOT NULL);
            CREATE TABLE saga_inbox (message_id TEXT PRIMARY KEY, received_ms INTEGER NOT NULL);
            INSERT INTO order_saga VALUES ('v1-order', 'Submitted', 1, 'C', '10.50', '[]', '', 't1', NULL, 0, '',
                '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
            INSERT INTO saga_inbox VALUES ('m-1', 0);
        )sql");
        db.SetUserVersion(1);
        OrderRepository repository(db);
        CHECK(db.UserVersion() == OrderRepository::kSchemaVersion);
        const auto loaded = repository.LoadSaga("v1-order"_order_id);
        REQUIRE(loaded);
        CHECK(loaded->state == OrderState::kSubmitted);
        CHECK(loaded->total_amount.ToString() == "10.50");
        CHECK(loaded->applied_message_ids.empty());
        auto& tables = db.Prepare("SELECT count(*) FROM sqlite_master WHERE name = 'saga_inbox'");
        REQUIRE(tables.Step());
        CHECK(tables.Integer(0) == 0);
        tables.Reset();
        auto& items = db.Prepare("SELECT count(*) FROM pragma_table_info('order_saga') WHERE name = 'items'");
        REQUIRE(items.Step());
        CHECK(items.Integer(0) == 0);  // version 3: the saga row no longer keeps the items
        items.Reset();
    }

    TEST_CASE("A saga instance round-trips - and a stale version is a conflict") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        auto instance = Instance("r-1");
        repository.SaveSaga(instance);
        CHECK_THROWS_AS(repository.SaveSaga(instance), ConcurrencyConflict);  // a second insert of version 0
        auto loaded = repository.LoadSaga("r-1"_order_id);
        REQUIRE(loaded);
        CHECK(loaded->version == 1);
        CHECK(loaded->state == OrderState::kSubmitted);
        CHECK(loaded->total_amount.ToString() == "10.50");
        CHECK(loaded->items.empty());  // only the transition that starts the saga uses them
        CHECK(loaded->customer_number == instance.customer_number);
        CHECK(loaded->timeout_due_ms == 1234);
        CHECK(loaded->created_at == instance.created_at);
        CHECK(loaded->applied_message_ids.empty());
        loaded->state = OrderState::kInventoryReserved;
        loaded->RememberApplied("m-1");
        loaded->RememberApplied("an id with \"quotes\" and spaces");
        loaded->customer_number = "changed";  // fixed when the saga starts: an update does not write it
        repository.SaveSaga(*loaded);
        CHECK(repository.LoadSaga("r-1"_order_id)->version == 2);
        CHECK(repository.LoadSaga("r-1"_order_id)->customer_number == "C");
        CHECK(repository.LoadSaga("r-1"_order_id)->state == OrderState::kInventoryReserved);
        CHECK(repository.LoadSaga("r-1"_order_id)->applied_message_ids ==
              std::vector<std::string>{"m-1", "an id with \"quotes\" and spaces"});
        CHECK_THROWS_AS(repository.SaveSaga(*loaded), ConcurrencyConflict);  // still version 1 in hand
        CHECK_THROWS_AS(repository.DeleteSaga("r-1"_order_id, 1), ConcurrencyConflict);
        repository.DeleteSaga("r-1"_order_id, 2);
        CHECK_FALSE(repository.LoadSaga("r-1"_order_id));
        CHECK(repository.PendingTimeouts().empty());
    }

    TEST_CASE("The orders table keeps the first creation time and follows the saga's status") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        OrderRecord record{.order_id = "r-2"_order_id,
                           .customer_number = "C",
                           .total_amount = *Decimal::Parse("5"),
                           .created_at = UtcNow(),
                           .updated_at = UtcNow()};
        CHECK(repository.InsertOrderIfAbsent(record));
        CHECK_FALSE(repository.InsertOrderIfAbsent(record));
        auto instance = Instance("r-2");
        instance.state = OrderState::kFailed;
        instance.reason = "Out of stock";
        repository.UpsertOrderFromSaga(instance);
        const auto order = repository.FindOrder("r-2"_order_id);
        REQUIRE(order);
        CHECK(order->status == order_service::OrderStatus::kFailed);
        CHECK(order->reason == "Out of stock");
        CHECK(order->created_at == record.created_at);
    }

    TEST_CASE("A saga instance remembers the latest applied message ids - the oldest are forgotten") {
        OrderSagaInstance instance;
        for (int i = 0; i < 20; ++i) instance.RememberApplied("m-" + std::to_string(i));
        instance.RememberApplied("m-19");  // already there: no second entry
        REQUIRE(instance.applied_message_ids.size() == OrderSagaInstance::kRememberedMessages);
        CHECK(instance.applied_message_ids.front() == "m-4");
        CHECK(instance.HasApplied("m-19"));
        CHECK_FALSE(instance.HasApplied("m-3"));
        instance.RememberApplied("");  // a message without an id is not remembered
        CHECK(instance.applied_message_ids.back() == "m-19");
    }

    TEST_CASE("AcceptOrder stores the order and its message together - a taken id writes nothing") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        OrderRecord order{.order_id = "accept-3"_order_id, .customer_number = "C"};
        order.total_amount = *Decimal::Parse("10.50");
        messaging::OutgoingMessage submitted;
        submitted.exchange = "Contracts:OrderSubmitted";
        submitted.message.properties.message_id = "m-accept";
        const auto first = repository.AcceptOrder(order, submitted);
        CHECK(first.stored);
        REQUIRE(repository.PendingOutbox(10).size() == 1);
        CHECK(repository.PendingOutbox(10)[0].sequence == first.outbox_sequence);
        CHECK(repository.FindOrderStatus("accept-3"_order_id) == OrderStatus::kAccepted);

        order.customer_number = "D";
        const auto again = repository.AcceptOrder(order, submitted);
        CHECK_FALSE(again.stored);
        REQUIRE(again.existing);
        CHECK(again.existing->customer_number == "C");
        CHECK(repository.PendingOutbox(10).size() == 1);  // no second OrderSubmitted
    }

    TEST_CASE("SaveTransition writes state - outcome and outbox at once - or nothing on a conflict") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        messaging::OutgoingMessage command;
        command.exchange = "Contracts:CheckInventory";
        auto instance = Instance("move-3");
        const auto sequences = repository.SaveTransition(instance, false, 0, {command, command});
        CHECK(sequences.size() == 2);
        CHECK(repository.PendingOutbox(10).size() == 2);
        REQUIRE(repository.LoadSaga("move-3"_order_id));
        CHECK(repository.FindOrderStatus("move-3"_order_id) == OrderStatus::kSubmitted);

        // A stale instance (version 0 again, the row is at 1): nothing of the transition is written.
        instance.state = OrderState::kInventoryReserved;
        CHECK_THROWS_AS(repository.SaveTransition(instance, false, 0, {command}), ConcurrencyConflict);
        CHECK(repository.PendingOutbox(10).size() == 2);
        CHECK(repository.FindOrderStatus("move-3"_order_id) == OrderStatus::kSubmitted);
        CHECK_THROWS_AS(repository.SaveTransition(instance, true, 7, {command}), ConcurrencyConflict);
        CHECK(repository.PendingOutbox(10).size() == 2);
        CHECK(repository.LoadSaga("move-3"_order_id));

        // An outbox that refuses the message, the last write: the state and the outcome stay as they were.
        db.Execute("CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END");
        auto current = *repository.LoadSaga("move-3"_order_id);
        auto moved = current;
        moved.state = OrderState::kInventoryReserved;
        CHECK_THROWS(repository.SaveTransition(moved, false, current.version, {command}));
        CHECK(repository.LoadSaga("move-3"_order_id)->version == current.version);
        CHECK(repository.FindOrderStatus("move-3"_order_id) == OrderStatus::kSubmitted);
        OrderRecord order{.order_id = "refused-3"_order_id, .customer_number = "C"};
        CHECK_THROWS(repository.AcceptOrder(order, command));
        CHECK_FALSE(repository.FindOrder("refused-3"_order_id));
        db.Execute("DROP TRIGGER refuse_outbox");

        // Finalized at the stored version: the row goes, the outcome stays.
        auto stored = *repository.LoadSaga("move-3"_order_id);
        stored.state = OrderState::kCompleted;
        repository.SaveTransition(stored, true, stored.version, {});
        CHECK_FALSE(repository.LoadSaga("move-3"_order_id));
        CHECK(repository.FindOrderStatus("move-3"_order_id) == OrderStatus::kCompleted);
    }

    TEST_CASE("Outbox rows keep the message exactly") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        messaging::OutgoingMessage message;
        message.exchange = "Contracts:OrderCompleted";
        message.message.body = R"({"x":1})";
        message.message.properties.message_id = "m-1";
        message.message.properties.content_type = "application/vnd.masstransit+json";
        message.message.properties.correlation_id = "c-\"1\"\n";
        message.message.properties.headers["MT-Fault-RetryCount"] = std::int32_t{2};
        message.message.properties.headers["MT-Big"] = std::int64_t{1} << 40;  // keeps its width
        message.message.properties.headers["MT-Redelivered"] = true;
        message.message.properties.headers["Tenant"] = std::string("acme \"\\ caf\u00e9\t");
        const auto first = repository.AddToOutbox(message);
        const auto second = repository.AddToOutbox(message);
        auto pending = repository.PendingOutbox(10);
        REQUIRE(pending.size() == 2);
        CHECK(pending[0].sequence == first);
        CHECK(pending[0].message.message.body == message.message.body);
        CHECK(pending[0].message.message.properties.message_id == "m-1");
        CHECK(pending[0].message.message.properties.content_type == "application/vnd.masstransit+json");
        CHECK(pending[0].message.message.properties.correlation_id == "c-\"1\"\n");
        CHECK(pending[0].message.message.properties.delivery_mode == 2);
        CHECK(pending[0].message.message.properties.headers == message.message.properties.headers);
        CHECK(std::get<std::int32_t>(pending[0].message.message.properties.headers.at("MT-Fault-RetryCount")) == 2);
        const std::int64_t big = std::int64_t{1} << 40;
        CHECK(std::get<std::int64_t>(pending[0].message.message.properties.headers.at("MT-Big")) == big);
        repository.RemoveFromOutbox({first, second});
        CHECK(repository.PendingOutbox(10).empty());
    }

    TEST_CASE("Messages left in the outbox by a crash are sent when the service starts again") {
        auto dir = std::make_shared<test_support::TempDir>();
        {
            messaging::SqliteDatabase db(dir->File("orders.db"));
            OrderRepository repository(db);
            messaging::EventLoopThread loop_thread;
            messaging::OutgoingMessage left = loop_thread.loop().Invoke([&] {
                messaging::InMemoryTransport transport(loop_thread.loop());
                messaging::Bus bus(loop_thread.loop(), transport, {"Writer"});
                return bus.PreparePublish(StockReserved{.order_id = "crash-3"_order_id});
            });
            left.exchange = "Contracts:StockReserved";
            repository.AddToOutbox(left);
        }
        test_support::InMemorySystem system(test_support::SystemOptions{}, dir);
        REQUIRE(system.harness().WaitPublished<StockReserved>(
            [](const StockReserved& m) { return m.order_id.str() == "crash-3"; }));
        REQUIRE(test_support::WaitFor([&] {
            return system.loop().Invoke([&] { return system.orders().repository().PendingOutbox(10).empty(); });
        }));
    }
    TEST_CASE("A confirmed message whose row cannot be removed stays in the outbox and is sent again") {
        test_support::InMemorySystem system;
        auto refuse_removal = [&](bool refuse) {
            system.loop().Invoke([&] {
                system.orders().database().Execute(
                    refuse
                        ? "CREATE TRIGGER keep_outbox BEFORE DELETE ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END"
                        : "DROP TRIGGER keep_outbox");
            });
        };
        auto pending_rows = [&] {
            return system.loop().Invoke([&] { return system.orders().repository().PendingOutbox(10).size(); });
        };
        auto inventory_checks = [&] {
            return system.harness()
                .Published<CheckInventory>([](const CheckInventory& m) { return m.order_id.str() == "keep-3"; })
                .size();
        };
        refuse_removal(true);
        system.Submit("keep-3");
        REQUIRE(system.WaitForStatus("keep-3", order_service::OrderStatus::kCompleted));
        // Every message was confirmed, and every row is still there: none could be removed.
        CHECK(pending_rows() == 3);  // the saga's CheckInventory, ProcessPayment and OrderCompleted
        CHECK(inventory_checks() == 1);
        refuse_removal(false);
        // The sweep sends the rows again and removes them once confirmed; the saga ignores the repeats.
        REQUIRE(test_support::WaitFor([&] { return pending_rows() == 0; }, std::chrono::seconds(10)));
        CHECK(inventory_checks() == 2);
        CHECK(system.Order("keep-3")->status == order_service::OrderStatus::kCompleted);
    }
}
