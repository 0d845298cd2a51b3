// One test per row of the saga table, on the pure decision function: an instance in the row's state
// and the row's event give the next state, the commands to publish and the change to the timeout.
// The consumer around Decide() (storage, outbox, redelivery) is tested in OrderSagaConsumerTests.cpp.
#include <doctest/doctest.h>

#include "OrderService/OrderSaga.h"

using namespace contracts::literals;

using namespace order_service;
using namespace contracts;

namespace {

const Timestamp kNow = FromUnixMillis(1'700'000'000'000);

OrderSagaInstance In(OrderState state) {
    OrderSagaInstance instance;
    instance.order_id = "row-1"_order_id;
    instance.state = state;
    instance.customer_number = "CUST-1";
    instance.total_amount = *Decimal::Parse("149.97");
    instance.timeout_token = "token-1";
    return instance;
}

OrderEvent Event(OrderEventKind kind, std::string reason = "", std::string token = "") {
    return OrderEvent{
        .kind = kind, .order_id = "row-1"_order_id, .reason = std::move(reason), .timeout_token = std::move(token)};
}

SagaTransition Run(const OrderSagaInstance& instance, const OrderEvent& event) {
    return Decide(instance, event, SagaOptions{std::chrono::seconds(60), "tok"}, kNow, "token-2");
}

template <class T>
const T& Command(const SagaTransition& transition, std::size_t index) {
    REQUIRE(index < transition.commands.size());
    REQUIRE(std::holds_alternative<T>(transition.commands[index]));
    return std::get<T>(transition.commands[index]);
}

}  // namespace

TEST_SUITE("OrderService.SagaDecide") {
    TEST_CASE("Initial + OrderSubmitted -> Submitted: keep the order - schedule the timeout - CheckInventory") {
        auto event = Event(OrderEventKind::kOrderSubmitted);
        event.submitted = OrderSubmitted{.order_id = "row-1"_order_id,
                                         .timestamp = kNow,
                                         .customer_number = "CUST-9",
                                         .total_amount = *Decimal::Parse("20.00"),
                                         .items = {{"SKU-1", 2, *Decimal::Parse("10.00")}}};
        OrderSagaInstance initial;
        initial.order_id = "row-1"_order_id;
        const auto t = Run(initial, event);
        CHECK(t.disposition == Disposition::kApplied);
        CHECK(t.next.state == OrderState::kSubmitted);
        CHECK(t.next.customer_number == "CUST-9");
        CHECK(t.next.total_amount == *Decimal::Parse("20.00"));
        CHECK(t.timeout == TimeoutChange::kSchedule);
        CHECK(t.next.timeout_token == "token-2");
        CHECK(t.next.timeout_due_ms == ToUnixMillis(kNow) + 60'000);
        REQUIRE(t.commands.size() == 1);
        CHECK(Command<CheckInventory>(t, 0).items.size() == 1);
    }

    TEST_CASE("Submitted + StockReserved -> InventoryReserved: reschedule the timeout - ProcessPayment") {
        const auto t = Run(In(OrderState::kSubmitted), Event(OrderEventKind::kStockReserved));
        CHECK(t.next.state == OrderState::kInventoryReserved);
        CHECK(t.timeout == TimeoutChange::kSchedule);
        CHECK(t.next.timeout_token == "token-2");
        REQUIRE(t.commands.size() == 1);
        CHECK(Command<ProcessPayment>(t, 0).amount == *Decimal::Parse("149.97"));
        CHECK(Command<ProcessPayment>(t, 0).card_number == "tok");
    }

    TEST_CASE("Submitted + StockShortage -> Failed: OrderFailed with the event's reason") {
        const auto t = Run(In(OrderState::kSubmitted), Event(OrderEventKind::kStockShortage, "Out of stock"));
        CHECK(t.next.state == OrderState::kFailed);
        CHECK(t.timeout == TimeoutChange::kCancel);
        REQUIRE(t.commands.size() == 1);
        CHECK(Command<OrderFailed>(t, 0).reason == "Out of stock");
    }

    TEST_CASE("Submitted or InventoryReserved + current OrderTimeoutExpired -> Failed: ReleaseStock and OrderFailed") {
        for (auto state : {OrderState::kSubmitted, OrderState::kInventoryReserved}) {
            const auto t = Run(In(state), Event(OrderEventKind::kOrderTimeoutExpired, "", "token-1"));
            CHECK(t.next.state == OrderState::kFailed);
            CHECK(t.timeout == TimeoutChange::kCancel);
            REQUIRE(t.commands.size() == 2);
            CHECK(Command<ReleaseStock>(t, 0).reason == kTimeoutReason);
            CHECK(Command<OrderFailed>(t, 1).reason == kTimeoutReason);
        }
    }

    TEST_CASE("A timeout whose token was superseded changes nothing") {
        for (auto state : {OrderState::kSubmitted, OrderState::kInventoryReserved}) {
            const auto t = Run(In(state), Event(OrderEventKind::kOrderTimeoutExpired, "", "token-0"));
            CHECK(t.disposition == Disposition::kIgnored);
            CHECK(t.next.state == state);
            CHECK(t.commands.empty());
        }
    }

    TEST_CASE("Submitted + Fault<CheckInventory> -> Failed: OrderFailed naming the fault") {
        const auto t =
            Run(In(OrderState::kSubmitted), Event(OrderEventKind::kCheckInventoryFaulted, "warehouse offline"));
        CHECK(t.next.state == OrderState::kFailed);
        REQUIRE(t.commands.size() == 1);
        CHECK(Command<OrderFailed>(t, 0).reason == "Inventory check faulted: warehouse offline");
    }

    TEST_CASE("InventoryReserved + PaymentAccepted -> Completed: OrderCompleted - finalize") {
        auto event = Event(OrderEventKind::kPaymentAccepted);
        event.transaction_id = "txn-1";
        const auto t = Run(In(OrderState::kInventoryReserved), event);
        CHECK(t.next.state == OrderState::kCompleted);
        CHECK(t.finalize);
        CHECK(t.next.transaction_id == "txn-1");
        CHECK(t.timeout == TimeoutChange::kCancel);
        REQUIRE(t.commands.size() == 1);
        CHECK(Command<OrderCompleted>(t, 0).order_id.str() == "row-1");
    }

    TEST_CASE("InventoryReserved + PaymentFailed or Fault<ProcessPayment> -> Failed: ReleaseStock and OrderFailed") {
        const auto declined =
            Run(In(OrderState::kInventoryReserved), Event(OrderEventKind::kPaymentFailed, "Card declined"));
        CHECK(declined.next.state == OrderState::kFailed);
        REQUIRE(declined.commands.size() == 2);
        CHECK(Command<ReleaseStock>(declined, 0).reason == "Card declined");
        CHECK(Command<OrderFailed>(declined, 1).reason == "Card declined");
        const auto faulted =
            Run(In(OrderState::kInventoryReserved), Event(OrderEventKind::kProcessPaymentFaulted, "gateway down"));
        CHECK(faulted.next.state == OrderState::kFailed);
        REQUIRE(faulted.commands.size() == 2);
        CHECK(Command<OrderFailed>(faulted, 1).reason == "Payment faulted: gateway down");
    }

    TEST_CASE("Failed + late StockReserved -> Failed: ReleaseStock - Failed + StockReleased records it") {
        const auto late = Run(In(OrderState::kFailed), Event(OrderEventKind::kStockReserved));
        CHECK(late.disposition == Disposition::kApplied);
        CHECK(late.next.state == OrderState::kFailed);
        REQUIRE(late.commands.size() == 1);
        CHECK(Command<ReleaseStock>(late, 0).reason == "Stock reserved after the order failed");
        const auto released = Run(In(OrderState::kFailed), Event(OrderEventKind::kStockReleased));
        CHECK(released.next.stock_released);
        CHECK(released.commands.empty());
    }

    TEST_CASE("Duplicates of applied events are ignored and publish nothing") {
        const std::pair<OrderState, OrderEventKind> duplicates[] = {
            {OrderState::kSubmitted, OrderEventKind::kOrderSubmitted},
            {OrderState::kInventoryReserved, OrderEventKind::kStockReserved},
            {OrderState::kFailed, OrderEventKind::kPaymentFailed},
            {OrderState::kFailed, OrderEventKind::kOrderTimeoutExpired},
            {OrderState::kCompleted, OrderEventKind::kPaymentAccepted},
        };
        for (const auto& [state, kind] : duplicates) {
            CAPTURE(EventName(kind));
            const auto t = Run(In(state), Event(kind));
            CHECK(t.disposition == Disposition::kIgnored);
            CHECK(t.next.state == state);
            CHECK(t.commands.empty());
            CHECK(t.timeout == TimeoutChange::kNone);
        }
    }

    TEST_CASE("Failed + PaymentAccepted -> Failed: RefundPayment of the amount - Failed + PaymentRefunded records it") {
        OrderEvent accepted = Event(OrderEventKind::kPaymentAccepted);
        accepted.transaction_id = "txn-1";
        const auto late = Run(In(OrderState::kFailed), accepted);
        CHECK(late.disposition == Disposition::kApplied);
        CHECK(late.next.state == OrderState::kFailed);
        CHECK(late.next.transaction_id == "txn-1");
        CHECK(late.timeout == TimeoutChange::kNone);
        REQUIRE(late.commands.size() == 1);
        const auto& refund = Command<RefundPayment>(late, 0);
        CHECK(refund.order_id.str() == "row-1");
        CHECK(refund.transaction_id == "txn-1");
        CHECK(refund.amount == *Decimal::Parse("149.97"));
        CHECK(refund.reason == kLatePaymentReason);
        CHECK_FALSE(late.next.payment_refunded);
        const auto refunded = Run(late.next, Event(OrderEventKind::kPaymentRefunded));
        CHECK(refunded.disposition == Disposition::kApplied);
        CHECK(refunded.next.payment_refunded);
        CHECK(refunded.commands.empty());
    }

    TEST_CASE("A pair with no row is unhandled and leaves the instance as it was") {
        const auto t = Run(In(OrderState::kCompleted), Event(OrderEventKind::kPaymentRefunded));
        CHECK(t.disposition == Disposition::kUnhandled);
        CHECK(t.next.state == OrderState::kCompleted);
        CHECK(t.commands.empty());
    }
}
