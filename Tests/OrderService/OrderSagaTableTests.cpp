// One test per row of the saga table (wire contract A3): each starts from an instance stored in
// SQLite in the row's state, delivers the row's event through the bus to the real consumer, and
// checks the stored state and exactly what was published. The workers are not running, so nothing
// answers the commands.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "Support/TestSupport.h"

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
        instance.order_id = id;
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
            if (message.order_id == id) out.push_back(message);
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
    fault.message = CheckInventory{id, {}};
    return fault;
}

Fault<ProcessPayment> PaymentFault(const std::string& id) {
    Fault<ProcessPayment> fault;
    fault.fault_id = Guid::New();
    fault.exceptions.push_back({"Payment.Exception", nullptr, "", "Payment gateway unavailable", "PaymentService"});
    fault.message = ProcessPayment{id, *Decimal::Parse("149.97"), "tok"};
    return fault;
}

}  // namespace

TEST_SUITE("OrderService.SagaTable") {
    TEST_CASE("Initial + OrderSubmitted -> Submitted: store order - schedule timeout - publish CheckInventory") {
        SagaRowFixture f;
        f.Deliver(OrderSubmitted{
            "row-1", UtcNow(), "CUST-9", *Decimal::Parse("20.00"), {{"SKU-1", 2, *Decimal::Parse("10.00")}}});
        const auto saga = f.system.Saga("row-1");
        REQUIRE(saga);
        CHECK(saga->state == OrderState::kSubmitted);
        CHECK(saga->customer_number == "CUST-9");
        CHECK(saga->timeout_due_ms.has_value());
        CHECK(f.system.loop().Invoke([&] { return f.system.orders().timeouts().PendingCount(); }) == 1);
        const auto commands = f.PublishedBySaga<CheckInventory>("row-1");
        REQUIRE(commands.size() == 1);
        CHECK(commands[0].items.size() == 1);
        CHECK(f.PublishedCountBySaga() == 1);
        CHECK(f.system.Order("row-1")->status == order_service::OrderStatus::kSubmitted);
    }

    TEST_CASE("Submitted + StockReserved -> InventoryReserved: reschedule timeout - publish ProcessPayment") {
        SagaRowFixture f;
        f.Store("row-2", OrderState::kSubmitted);
        f.Deliver(StockReserved{"row-2"});
        const auto saga = f.system.Saga("row-2");
        CHECK(saga->state == OrderState::kInventoryReserved);
        CHECK(saga->timeout_token != "token-1");
        CHECK(saga->version == 2);
        const auto payments = f.PublishedBySaga<ProcessPayment>("row-2");
        REQUIRE(payments.size() == 1);
        CHECK(payments[0].amount == *Decimal::Parse("149.97"));
        CHECK(payments[0].card_number == "tok_test_visa");
        CHECK(f.PublishedCountBySaga() == 1);
    }

    TEST_CASE("Submitted + StockShortage -> Failed: publish OrderFailed with the event's reason") {
        SagaRowFixture f;
        f.Store("row-3", OrderState::kSubmitted);
        f.Deliver(StockShortage{"row-3", "Out of stock"});
        CHECK(f.StateOf("row-3") == OrderState::kFailed);
        REQUIRE(f.PublishedBySaga<OrderFailed>("row-3").size() == 1);
        CHECK(f.PublishedBySaga<OrderFailed>("row-3")[0].reason == "Out of stock");
        CHECK(f.PublishedCountBySaga() == 1);
        CHECK(f.system.Order("row-3")->reason == "Out of stock");
    }

    TEST_CASE("Submitted + OrderTimeoutExpired -> Failed: publish ReleaseStock and OrderFailed") {
        SagaRowFixture f;
        f.Store("row-4", OrderState::kSubmitted);
        f.Deliver(OrderTimeoutExpired{"row-4"}, WithToken("token-1"));
        CHECK(f.StateOf("row-4") == OrderState::kFailed);
        CHECK(f.PublishedBySaga<ReleaseStock>("row-4").size() == 1);
        REQUIRE(f.PublishedBySaga<OrderFailed>("row-4").size() == 1);
        CHECK(f.PublishedBySaga<OrderFailed>("row-4")[0].reason == kTimeoutReason);
        CHECK_FALSE(f.system.Saga("row-4")->timeout_due_ms.has_value());
    }

    TEST_CASE("Submitted + Fault<CheckInventory> -> Failed: publish OrderFailed") {
        SagaRowFixture f;
        f.Store("row-5", OrderState::kSubmitted);
        f.Deliver(InventoryFault("row-5"));
        CHECK(f.StateOf("row-5") == OrderState::kFailed);
        REQUIRE(f.PublishedBySaga<OrderFailed>("row-5").size() == 1);
        CHECK(f.PublishedBySaga<OrderFailed>("row-5")[0].reason == "Inventory check faulted: warehouse offline");
        CHECK(f.PublishedCountBySaga() == 1);
    }

    TEST_CASE("InventoryReserved + PaymentAccepted -> Completed: publish OrderCompleted and finalize") {
        SagaRowFixture f;
        f.Store("row-6", OrderState::kInventoryReserved);
        f.Deliver(PaymentAccepted{"row-6", "tx-1"});
        CHECK_FALSE(f.system.Saga("row-6").has_value());  // finalized: the saga row is gone
        const auto order = f.system.Order("row-6");
        REQUIRE(order);  // the outcome stays queryable
        CHECK(order->status == order_service::OrderStatus::kCompleted);
        CHECK(order->transaction_id == "tx-1");
        CHECK(f.PublishedBySaga<OrderCompleted>("row-6").size() == 1);
        CHECK(f.PublishedCountBySaga() == 1);
        CHECK(f.system.loop().Invoke([&] { return f.system.orders().timeouts().PendingCount(); }) == 0);
    }

    TEST_CASE("InventoryReserved + PaymentFailed -> Failed: publish ReleaseStock and OrderFailed") {
        SagaRowFixture f;
        f.Store("row-7", OrderState::kInventoryReserved);
        f.Deliver(PaymentFailed{"row-7", "Credit card limit exceeded"});
        CHECK(f.StateOf("row-7") == OrderState::kFailed);
        CHECK(f.PublishedBySaga<ReleaseStock>("row-7").size() == 1);
        REQUIRE(f.PublishedBySaga<OrderFailed>("row-7").size() == 1);
        CHECK(f.PublishedBySaga<OrderFailed>("row-7")[0].reason == "Credit card limit exceeded");
    }

    TEST_CASE("InventoryReserved + OrderTimeoutExpired -> Failed: publish ReleaseStock and OrderFailed") {
        SagaRowFixture f;
        f.Store("row-8", OrderState::kInventoryReserved);
        f.Deliver(OrderTimeoutExpired{"row-8"}, WithToken("token-1"));
        CHECK(f.StateOf("row-8") == OrderState::kFailed);
        CHECK(f.PublishedBySaga<ReleaseStock>("row-8").size() == 1);
        CHECK(f.PublishedBySaga<OrderFailed>("row-8").size() == 1);
    }

    TEST_CASE("InventoryReserved + Fault<ProcessPayment> -> Failed: publish ReleaseStock and OrderFailed") {
        SagaRowFixture f;
        f.Store("row-9", OrderState::kInventoryReserved);
        f.Deliver(PaymentFault("row-9"));
        CHECK(f.StateOf("row-9") == OrderState::kFailed);
        CHECK(f.PublishedBySaga<ReleaseStock>("row-9").size() == 1);
        REQUIRE(f.PublishedBySaga<OrderFailed>("row-9").size() == 1);
        CHECK(f.PublishedBySaga<OrderFailed>("row-9")[0].reason == "Payment faulted: Payment gateway unavailable");
    }

    TEST_CASE("Failed + late StockReserved -> Failed: publish ReleaseStock") {
        SagaRowFixture f;
        f.Store("row-10", OrderState::kFailed);
        f.Deliver(StockReserved{"row-10"});
        CHECK(f.StateOf("row-10") == OrderState::kFailed);
        CHECK(f.PublishedBySaga<ReleaseStock>("row-10").size() == 1);
        CHECK(f.PublishedCountBySaga() == 1);
    }

    TEST_CASE("Failed + StockReleased -> Failed: record the release - publish nothing") {
        SagaRowFixture f;
        f.Store("row-11", OrderState::kFailed);
        f.Deliver(StockReleased{"row-11"});
        CHECK(f.system.Saga("row-11")->stock_released);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("Duplicates of applied events change nothing and publish nothing") {
        SagaRowFixture f;
        f.Store("dup-s", OrderState::kSubmitted);
        f.Store("dup-r", OrderState::kInventoryReserved);
        f.Store("dup-f", OrderState::kFailed);
        f.Deliver(OrderSubmitted{"dup-s", UtcNow(), "C", *Decimal::Parse("1"), {}});
        f.Deliver(OrderSubmitted{"dup-r", UtcNow(), "C", *Decimal::Parse("1"), {}});
        f.Deliver(StockReserved{"dup-r"});
        for (auto event : {0, 1, 2, 3, 4}) {
            switch (event) {
                case 0:
                    f.Deliver(OrderSubmitted{"dup-f", UtcNow(), "C", *Decimal::Parse("1"), {}});
                    break;
                case 1:
                    f.Deliver(StockShortage{"dup-f", "again"});
                    break;
                case 2:
                    f.Deliver(PaymentFailed{"dup-f", "again"});
                    break;
                case 3:
                    f.Deliver(InventoryFault("dup-f"));
                    break;
                case 4:
                    f.Deliver(PaymentFault("dup-f"));
                    break;
            }
        }
        f.Deliver(OrderTimeoutExpired{"dup-f"});
        CHECK(f.StateOf("dup-s") == OrderState::kSubmitted);
        CHECK(f.StateOf("dup-r") == OrderState::kInventoryReserved);
        CHECK(f.StateOf("dup-f") == OrderState::kFailed);
        CHECK(f.system.Saga("dup-r")->version == 1);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("A redelivered message that was already applied publishes nothing the second time") {
        SagaRowFixture f;
        f.Store("redeliver", OrderState::kFailed);
        const messaging::TransportMessage late = f.system.loop().Invoke(
            [&] { return f.system.orders().bus().PreparePublish(StockReserved{"redeliver"}).message; });
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
        f.Deliver(OrderTimeoutExpired{"stale"}, WithToken("an-older-token"));
        CHECK(f.StateOf("stale") == OrderState::kInventoryReserved);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("An event with no row for the state faults and lands in order-service_error") {
        SagaRowFixture f;
        f.Store("unhandled", OrderState::kFailed);
        f.Deliver(PaymentAccepted{"unhandled", "tx-late"});
        REQUIRE(f.system.harness().WaitUntil([&] { return f.system.QueueDepth("order-service_error") == 1; }));
        const auto copy = f.system.QueueMessages("order-service_error").at(0);
        CHECK(
            messaging::HeaderToString(*messaging::FindHeader(copy.properties.headers, "MT-Fault-Message")) ==
            "The PaymentAccepted event is not handled during the Failed state for the OrderStateMachine state machine");
        CHECK(messaging::HeaderToString(*messaging::FindHeader(copy.properties.headers, "MT-Fault-ConsumerType")) ==
              "Orders.OrderState");
        CHECK(f.StateOf("unhandled") == OrderState::kFailed);
    }

    TEST_CASE("An event for an order with no saga instance is discarded - not skipped") {
        SagaRowFixture f;
        f.Deliver(StockReserved{"nobody"});
        CHECK_FALSE(f.system.Saga("nobody").has_value());
        CHECK(f.system.QueueDepth("order-service_skipped") == 0);
        CHECK(f.system.QueueDepth("order-service_error") == 0);
        CHECK(f.PublishedCountBySaga() == 0);
    }

    TEST_CASE("The pure decision function matches the stored behaviour for a sample row") {
        OrderSagaInstance instance;
        instance.order_id = "pure";
        instance.state = OrderState::kSubmitted;
        instance.timeout_token = "t";
        OrderEvent event{OrderEventKind::kStockShortage, "pure", "none left", {}, {}, {}};
        const auto transition = Decide(instance, event, SagaOptions{}, UtcNow(), "new");
        CHECK(transition.disposition == Disposition::kApplied);
        CHECK(transition.next.state == OrderState::kFailed);
        CHECK(transition.timeout == TimeoutChange::kCancel);
        REQUIRE(transition.commands.size() == 1);
        CHECK(std::get<OrderFailed>(transition.commands[0]).reason == "none left");
        CHECK(instance.state == OrderState::kSubmitted);  // the input is untouched
    }

    TEST_CASE("docs/saga.md shows the diagram generated from the table") {
        std::ifstream in(SAGA_SOURCE_DIR "/docs/saga.md");
        std::stringstream text;
        text << in.rdbuf();
        CHECK_MESSAGE(text.str().find(OrderSagaMermaid()) != std::string::npos,
                      "regenerate docs/saga.md: the table changed. Expected:\n"
                          << OrderSagaMermaid());
    }
}
