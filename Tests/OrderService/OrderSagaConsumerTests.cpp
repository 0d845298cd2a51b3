// The saga consumer around the pure Decide() (whose rows are tested in OrderSagaDecideTests.cpp): an
// instance stored in SQLite, an event delivered through the bus, and what is stored and published for
// duplicates, redeliveries, stale timeouts and unhandled events. The workers are not running, so
// nothing answers the commands.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "Support/TestSupport.h"

using namespace contracts::literals;

using namespace order_service;
using namespace contracts;
using namespace std::chrono_literals;
using test_support::InMemorySystem;

namespace {

struct SagaRowFixture {
    SagaRowFixture()
        : system(test_support::SystemOptions{.saga_timeout = 60s, .start_inventory = false, .start_payment = false}) {}

    // Stores an instance of order `id` in `state`, as the saga would have left it.
    OrderSagaInstance Store(const std::string& id, OrderState state) {
        OrderSagaInstance instance;
        instance.order_id = contracts::OrderId::Parse(id).value();
        instance.state = state;
        instance.customer_number = "CUST-1";
        instance.total_amount = *Decimal::Parse("149.97");
        instance.timeout_token = state == OrderState::kFailed ? "" : "token-1";
        if (state != OrderState::kFailed) instance.timeout_due_ms = ToUnixMillis(UtcNow()) + 60000;
        instance.created_at = instance.updated_at = UtcNow();
        system.loop().Invoke([&] {
            system.orders().repository().SaveSaga(instance);
            system.orders().repository().UpsertOrderFromSaga(instance);
        });
        instance.version = 1;
        return instance;
    }

    // Publishes `event` and waits until the saga has handled it (consumed, or faulted).
    template <class T>
    void Deliver(const T& event, messaging::SendOptions options = {}) {
        const auto consumed_before = system.harness().Consumed().size();
        const auto faulted_before = system.harness().Faulted().size();
        REQUIRE(system.Publish(event, options).ok());
        REQUIRE(system.harness().WaitUntil([&] {
            return system.harness().Consumed().size() > consumed_before ||
                   system.harness().Faulted().size() > faulted_before;
        }));
        REQUIRE(system.WaitIdle());
    }

    template <class T>
    std::vector<T> PublishedBySaga(const std::string& id) {
        std::vector<T> out;
        for (const auto& record : system.harness().Published()) {
            if (!record.HasType(MessageContract<T>::Name().Urn())) continue;
            if (record.envelope.value("sourceAddress", "") != "loopback://localhost/order-service") continue;
            T message = MessageContract<T>::Read(record.message);
            if (message.order_id.str() == id) out.push_back(message);
        }
        return out;
    }

    std::size_t PublishedCountBySaga() {
        std::size_t count = 0;
        for (const auto& record : system.harness().Published())
            if (record.envelope.value("sourceAddress", "") == "loopback://localhost/order-service") ++count;
        return count;
    }

    OrderState StateOf(const std::string& id) {
        auto saga = system.Saga(id);
        REQUIRE(saga);
        return saga->state;
    }

    InMemorySystem system;
};

messaging::SendOptions WithToken(const std::string& token) {
    messaging::SendOptions options;
    options.headers["MT-Scheduling-TokenId"] = token;
    return options;
}

Fault<CheckInventory> InventoryFault(const std::string& id) {
    Fault<CheckInventory> fault;
    fault.fault_id = Guid::New();
    fault.exceptions.push_back({"Inventory.Exception", nullptr, "", "warehouse offline", "InventoryService"});
    fault.message = CheckInventory{.order_id = contracts::OrderId::Parse(id).value()};
    return fault;
}

Fault<ProcessPayment> PaymentFault(const std::string& id) {
    Fault<ProcessPayment> fault;
    fault.fault_id = Guid::New();
    fault.exceptions.push_back({"Payment.Exception", nullptr, "", "Payment gateway unavailable", "PaymentService"});
    fault.message = ProcessPayment{
        .order_id = contracts::OrderId::Parse(id).value(), .amount = *Decimal::Parse("149.97"), .card_number = "tok"};
    return fault;
}

}  // namespace

TEST_SUITE("OrderService.SagaConsumer") {
    TEST_CASE("Duplicates of applied events change nothing and publish nothing") {
        SagaRowFixture f;
        f.Store("dup-s", OrderState::kSubmitted);
        f.Store("dup-r", OrderState::kInventoryReserved);
        f.Store("dup-f", OrderState::kFailed);
        f.Deliver(OrderSubmitted{.order_id = "dup-s"_order_id,
                                 .timestamp = UtcNow(),
                                 .customer_number = "C",
                                 .total_amount = *Decimal::Parse("1"),
                                 .items = {}});
        f.Deliver(OrderSubmitted{.order_id = "dup-r"_order_id,
                                 .timestamp = UtcNow(),
                                 .customer_number = "C",
                                 .total_amount = *Decimal::Parse("1"),
                                 .items = {}});
        f.Deliver(StockReserved{.order_id = "dup-r"_order_id});
        for (auto event : {0, 1, 2, 3, 4}) {
            switch (event) {
                case 0:
                    f.Deliver(OrderSubmitted{.order_id = "dup-f"_order_id,
                                             .timestamp = UtcNow(),
                                             .customer_number = "C",
                                             .total_amount = *Decimal::Parse("1"),
                                             .items = {}});
                    break;
                case 1:
                    f.Deliver(StockShortage{.order_id = "dup-f"_order_id, .reason = "again"});
                    break;
                case 2:
                    f.Deliver(PaymentFailed{.order_id = "dup-f"_order_id, .reason = "again"});
                    break;
                case 3:
                    f.Deliver(InventoryFault("dup-f"));
                    break;
                case 4:
                    f.Deliver(PaymentFault("dup-f"));
                    break;
            }
        }
        f.Deliver(OrderTimeoutExpired{.order_id = "dup-f"_order_id});
        CHECK(f.StateOf("dup-s") == OrderState::kSubmitted);
        CHECK(f.StateOf("dup-r") == OrderState::kInventoryReserved);
        CHECK(f.StateOf("dup-f") == OrderState::kFailed);
        CHECK(f.system.Saga("dup-r")->version == 1);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("A redelivered message that was already applied publishes nothing the second time") {
        SagaRowFixture f;
        f.Store("redeliver", OrderState::kFailed);
        const messaging::TransportMessage late = f.system.loop().Invoke([&] {
            return f.system.orders().bus().PreparePublish(StockReserved{.order_id = "redeliver"_order_id}).message;
        });
        REQUIRE(f.system.PublishRaw("Contracts:StockReserved", late).ok());
        REQUIRE(f.system.harness().WaitUntil([&] { return f.PublishedBySaga<ReleaseStock>("redeliver").size() == 1; }));
        REQUIRE(f.system.WaitIdle());
        REQUIRE(f.system.PublishRaw("Contracts:StockReserved", late).ok());  // same messageId again
        REQUIRE(f.system.harness().WaitUntil([&] { return f.system.harness().Consumed<StockReserved>().size() == 2; }));
        REQUIRE(f.system.WaitIdle());
        CHECK(f.PublishedBySaga<ReleaseStock>("redeliver").size() == 1);
    }

    TEST_CASE("A timeout whose token was superseded is ignored") {
        SagaRowFixture f;
        f.Store("stale", OrderState::kInventoryReserved);
        f.Deliver(OrderTimeoutExpired{.order_id = "stale"_order_id}, WithToken("an-older-token"));
        CHECK(f.StateOf("stale") == OrderState::kInventoryReserved);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("An event with no row for the state faults and lands in order-service_error") {
        SagaRowFixture f;
        f.Store("unhandled", OrderState::kSubmitted);
        f.Deliver(PaymentRefunded{.order_id = "unhandled"_order_id, .transaction_id = "tx-late"});
        REQUIRE(f.system.harness().WaitUntil([&] { return f.system.QueueDepth("order-service_error") == 1; }));
        const auto copy = f.system.QueueMessages("order-service_error").at(0);
        CHECK(messaging::HeaderToString(*messaging::FindHeader(copy.properties.headers, "MT-Fault-Message")) ==
              "The PaymentRefunded event is not handled during the Submitted state for the OrderStateMachine state "
              "machine");
        CHECK(messaging::HeaderToString(*messaging::FindHeader(copy.properties.headers, "MT-Fault-ConsumerType")) ==
              "Orders.OrderState");
        CHECK(f.StateOf("unhandled") == OrderState::kSubmitted);
    }

    TEST_CASE("An event for an order with no saga instance is discarded - not skipped") {
        SagaRowFixture f;
        f.Deliver(StockReserved{.order_id = "nobody"_order_id});
        CHECK_FALSE(f.system.Saga("nobody").has_value());
        CHECK(f.system.QueueDepth("order-service_skipped") == 0);
        CHECK(f.system.QueueDepth("order-service_error") == 0);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("docs/saga.md shows the diagram and the publish table generated from the table") {
        std::ifstream in(SAGA_SOURCE_DIR "/docs/saga.md");
        std::stringstream text;
        text << in.rdbuf();
        CHECK_MESSAGE(text.str().find(OrderSagaMermaid()) != std::string::npos,
                      "regenerate docs/saga.md: the table changed. Expected:\n"
                          << OrderSagaMermaid());
        CHECK_MESSAGE(text.str().find(OrderSagaPublishTable()) != std::string::npos,
                      "regenerate docs/saga.md: the table changed. Expected:\n"
                          << OrderSagaPublishTable());
    }
}
