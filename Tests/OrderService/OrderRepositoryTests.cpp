// OrderService's SQLite repository on its own: schema versioning, saga rows with the version check,
// the orders table, outbox and inbox.
#include <doctest/doctest.h>

#include "OrderService/OrderRepository.h"
#include "Support/TestSupport.h"

using namespace order_service;
using namespace contracts;

namespace {

OrderSagaInstance Instance(const std::string& id) {
    OrderSagaInstance instance;
    instance.order_id = id;
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

    TEST_CASE("A saga instance round-trips - and a stale version is a conflict") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        auto instance = Instance("r-1");
        repository.SaveSaga(instance);
        CHECK_THROWS_AS(repository.SaveSaga(instance), ConcurrencyConflict);  // a second insert of version 0
        auto loaded = repository.LoadSaga("r-1");
        REQUIRE(loaded);
        CHECK(loaded->version == 1);
        CHECK(loaded->state == OrderState::kSubmitted);
        CHECK(loaded->total_amount.ToString() == "10.50");
        CHECK(loaded->items == instance.items);
        CHECK(loaded->timeout_due_ms == 1234);
        CHECK(loaded->created_at == instance.created_at);
        loaded->state = OrderState::kInventoryReserved;
        repository.SaveSaga(*loaded);
        CHECK(repository.LoadSaga("r-1")->version == 2);
        CHECK_THROWS_AS(repository.SaveSaga(*loaded), ConcurrencyConflict);  // still version 1 in hand
        CHECK_THROWS_AS(repository.DeleteSaga("r-1", 1), ConcurrencyConflict);
        repository.DeleteSaga("r-1", 2);
        CHECK_FALSE(repository.LoadSaga("r-1"));
        CHECK(repository.PendingTimeouts().empty());
    }

    TEST_CASE("The orders table keeps the first creation time and follows the saga's status") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        OrderRecord record{"r-2", "Accepted", "", "C", *Decimal::Parse("5"), {}, "", UtcNow(), UtcNow()};
        CHECK(repository.InsertOrderIfAbsent(record));
        CHECK_FALSE(repository.InsertOrderIfAbsent(record));
        auto instance = Instance("r-2");
        instance.state = OrderState::kFailed;
        instance.reason = "Out of stock";
        repository.UpsertOrderFromSaga(instance);
        const auto order = repository.FindOrder("r-2");
        REQUIRE(order);
        CHECK(order->status == "Failed");
        CHECK(order->reason == "Out of stock");
        CHECK(order->created_at == record.created_at);
    }

    TEST_CASE("Outbox rows keep the message exactly - the inbox remembers message ids") {
        messaging::SqliteDatabase db(":memory:");
        OrderRepository repository(db);
        messaging::OutgoingMessage message;
        message.exchange = "Contracts:OrderCompleted";
        message.message.body = R"({"x":1})";
        message.message.properties.message_id = "m-1";
        message.message.properties.content_type = "application/vnd.masstransit+json";
        message.message.properties.headers["MT-Fault-RetryCount"] = std::int32_t{2};
        message.message.properties.headers["Tenant"] = std::string("acme");
        const auto first = repository.AddToOutbox(message);
        const auto second = repository.AddToOutbox(message);
        auto pending = repository.PendingOutbox(10);
        REQUIRE(pending.size() == 2);
        CHECK(pending[0].sequence == first);
        CHECK(pending[0].message.message.body == message.message.body);
        CHECK(pending[0].message.message.properties.message_id == "m-1");
        CHECK(std::get<std::int32_t>(pending[0].message.message.properties.headers.at("MT-Fault-RetryCount")) == 2);
        CHECK(std::get<std::string>(pending[0].message.message.properties.headers.at("Tenant")) == "acme");
        repository.RemoveFromOutbox({first, second});
        CHECK(repository.PendingOutbox(10).empty());

        CHECK_FALSE(repository.InboxContains("m-9"));
        repository.AddToInbox("m-9");
        CHECK(repository.InboxContains("m-9"));
        repository.PruneInbox(ToUnixMillis(UtcNow()) + 1000);
        CHECK_FALSE(repository.InboxContains("m-9"));
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
                return bus.PreparePublish(StockReserved{"crash-3"});
            });
            left.exchange = "Contracts:StockReserved";
            repository.AddToOutbox(left);
        }
        test_support::InMemorySystem system(test_support::SystemOptions{}, dir);
        REQUIRE(system.harness().WaitPublished<StockReserved>(
            [](const StockReserved& m) { return m.order_id == "crash-3"; }));
        REQUIRE(test_support::WaitFor([&] {
            return system.loop().Invoke([&] { return system.orders().repository().PendingOutbox(10).empty(); });
        }));
    }
}
