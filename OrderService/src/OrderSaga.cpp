#include "OrderService/OrderSaga.h"

#include <algorithm>
#include <array>

namespace order_service {

bool OrderSagaInstance::HasApplied(const std::string& message_id) const {
    return std::find(applied_message_ids.begin(), applied_message_ids.end(), message_id) != applied_message_ids.end();
}

void OrderSagaInstance::RememberApplied(const std::string& message_id) {
    if (message_id.empty() || HasApplied(message_id)) return;
    applied_message_ids.push_back(message_id);
    if (applied_message_ids.size() > kRememberedMessages)
        applied_message_ids.erase(applied_message_ids.begin(),
                                  applied_message_ids.end() - static_cast<std::ptrdiff_t>(kRememberedMessages));
}

namespace {

using contracts::Timestamp;

struct Context {
    const OrderEvent& event;
    const SagaOptions& options;
    Timestamp now;
    const std::string& new_token;
};

using Guard = bool (*)(const OrderSagaInstance&, const Context&);
using Action = void (*)(SagaTransition&, const Context&);

// Guards.
bool Always(const OrderSagaInstance&, const Context&) {
    return true;
}
bool CurrentTimeout(const OrderSagaInstance& instance, const Context& context) {
    // A timeout scheduled before the last reschedule is stale (MassTransit's token check). A timeout
    // from a scheduler that does not carry our token is taken as current.
    return context.event.timeout_token.empty() || context.event.timeout_token == instance.timeout_token;
}
bool StaleTimeout(const OrderSagaInstance& instance, const Context& context) {
    return !CurrentTimeout(instance, context);
}

// Actions.
void ScheduleTimeout(SagaTransition& t, const Context& c) {
    t.next.timeout_token = c.new_token;
    t.next.timeout_due_ms = contracts::ToUnixMillis(c.now) + c.options.timeout.count();
    t.timeout = TimeoutChange::kSchedule;
}

void CancelTimeout(SagaTransition& t) {
    t.next.timeout_token.clear();
    t.next.timeout_due_ms.reset();
    t.timeout = TimeoutChange::kCancel;
}

void StartOrder(SagaTransition& t, const Context& c) {
    const auto& submitted = *c.event.submitted;
    t.next.customer_number = submitted.customer_number;
    t.next.total_amount = submitted.total_amount;
    t.next.items = submitted.items;
    t.next.created_at = c.now;
    ScheduleTimeout(t, c);
    t.commands.push_back(contracts::CheckInventory{.order_id = t.next.order_id, .items = t.next.items});
}

void RequestPayment(SagaTransition& t, const Context& c) {
    ScheduleTimeout(t, c);
    t.commands.push_back(contracts::ProcessPayment{
        .order_id = t.next.order_id, .amount = t.next.total_amount, .card_number = c.options.card_token});
}

std::string FailureReason(const Context& c) {
    switch (c.event.kind) {
        case OrderEventKind::kOrderTimeoutExpired:
            return kTimeoutReason;
        case OrderEventKind::kCheckInventoryFaulted:
            return "Inventory check faulted: " + c.event.reason;
        case OrderEventKind::kProcessPaymentFaulted:
            return "Payment faulted: " + c.event.reason;
        default:
            return c.event.reason.empty() ? std::string(EventName(c.event.kind)) : c.event.reason;
    }
}

void FailOrder(SagaTransition& t, const Context& c) {
    CancelTimeout(t);
    t.next.reason = FailureReason(c);
    t.commands.push_back(contracts::OrderFailed{.order_id = t.next.order_id, .reason = t.next.reason});
}

void FailAndReleaseStock(SagaTransition& t, const Context& c) {
    CancelTimeout(t);
    t.next.reason = FailureReason(c);
    t.commands.push_back(contracts::ReleaseStock{.order_id = t.next.order_id, .reason = t.next.reason});
    t.commands.push_back(contracts::OrderFailed{.order_id = t.next.order_id, .reason = t.next.reason});
}

void CompleteOrder(SagaTransition& t, const Context& c) {
    CancelTimeout(t);
    t.next.transaction_id = c.event.transaction_id;
    t.commands.push_back(contracts::OrderCompleted{.order_id = t.next.order_id});
    t.finalize = true;
}

void ReleaseLateStock(SagaTransition& t, const Context&) {
    t.next.stock_released = false;
    t.commands.push_back(
        contracts::ReleaseStock{.order_id = t.next.order_id, .reason = "Stock reserved after the order failed"});
}

void RecordStockReleased(SagaTransition& t, const Context&) {
    t.next.stock_released = true;
}

// A payment taken after the order failed (it came after the deadline, or the order failed on another
// path meanwhile) is given back: the money is never kept for a failed order.
void RefundLatePayment(SagaTransition& t, const Context& c) {
    t.next.transaction_id = c.event.transaction_id;
    t.next.payment_refunded = false;
    t.commands.push_back(contracts::RefundPayment{.order_id = t.next.order_id,
                                                  .transaction_id = c.event.transaction_id,
                                                  .amount = t.next.total_amount,
                                                  .reason = kLatePaymentReason});
}

void RecordRefunded(SagaTransition& t, const Context&) {
    t.next.payment_refunded = true;
}

void Nothing(SagaTransition&, const Context&) {}

struct Row {
    OrderState from;
    OrderEventKind event;
    Guard guard;
    Action action;
    OrderState to;
    Disposition disposition;
    const char* name;
};

using S = OrderState;
using E = OrderEventKind;
constexpr auto kApply = Disposition::kApplied;
constexpr auto kIgnore = Disposition::kIgnored;

// clang-format off
constexpr std::array kOrderSagaTable = {
//   from                  event                       guard           action               to                    disposition  row name
Row{S::kInitial,           E::kOrderSubmitted,         Always,         StartOrder,          S::kSubmitted,         kApply,  "start order"},
Row{S::kSubmitted,         E::kStockReserved,          Always,         RequestPayment,      S::kInventoryReserved, kApply,  "stock reserved"},
Row{S::kSubmitted,         E::kStockShortage,          Always,         FailOrder,           S::kFailed,            kApply,  "stock shortage"},
Row{S::kSubmitted,         E::kOrderTimeoutExpired,    CurrentTimeout, FailAndReleaseStock, S::kFailed,            kApply,  "timed out awaiting stock"},
Row{S::kSubmitted,         E::kCheckInventoryFaulted,  Always,         FailOrder,           S::kFailed,            kApply,  "inventory check faulted"},
Row{S::kInventoryReserved, E::kPaymentAccepted,        Always,         CompleteOrder,       S::kCompleted,         kApply,  "payment accepted"},
Row{S::kInventoryReserved, E::kPaymentFailed,          Always,         FailAndReleaseStock, S::kFailed,            kApply,  "payment failed"},
Row{S::kInventoryReserved, E::kOrderTimeoutExpired,    CurrentTimeout, FailAndReleaseStock, S::kFailed,            kApply,  "timed out awaiting payment"},
Row{S::kInventoryReserved, E::kProcessPaymentFaulted,  Always,         FailAndReleaseStock, S::kFailed,            kApply,  "payment faulted"},
Row{S::kFailed,            E::kStockReserved,          Always,         ReleaseLateStock,    S::kFailed,            kApply,  "late stock released"},
Row{S::kFailed,            E::kStockReleased,          Always,         RecordStockReleased, S::kFailed,            kApply,  "stock release confirmed"},
Row{S::kFailed,            E::kPaymentAccepted,        Always,         RefundLatePayment,   S::kFailed,            kApply,  "late payment refunded"},
Row{S::kFailed,            E::kPaymentRefunded,        Always,         RecordRefunded,      S::kFailed,            kApply,  "refund confirmed"},
// Duplicates and stale events: already applied, so nothing changes and nothing is published.
Row{S::kSubmitted,         E::kOrderSubmitted,         Always,         Nothing,             S::kSubmitted,         kIgnore, "duplicate"},
Row{S::kSubmitted,         E::kOrderTimeoutExpired,    StaleTimeout,   Nothing,             S::kSubmitted,         kIgnore, "stale timeout"},
Row{S::kInventoryReserved, E::kOrderSubmitted,         Always,         Nothing,             S::kInventoryReserved, kIgnore, "duplicate"},
Row{S::kInventoryReserved, E::kStockReserved,          Always,         Nothing,             S::kInventoryReserved, kIgnore, "duplicate"},
Row{S::kInventoryReserved, E::kOrderTimeoutExpired,    StaleTimeout,   Nothing,             S::kInventoryReserved, kIgnore, "stale timeout"},
Row{S::kFailed,            E::kOrderSubmitted,         Always,         Nothing,             S::kFailed,            kIgnore, "duplicate"},
Row{S::kFailed,            E::kStockShortage,          Always,         Nothing,             S::kFailed,            kIgnore, "duplicate"},
Row{S::kFailed,            E::kPaymentFailed,          Always,         Nothing,             S::kFailed,            kIgnore, "duplicate"},
Row{S::kFailed,            E::kOrderTimeoutExpired,    Always,         Nothing,             S::kFailed,            kIgnore, "late timeout"},
Row{S::kFailed,            E::kCheckInventoryFaulted,  Always,         Nothing,             S::kFailed,            kIgnore, "duplicate"},
Row{S::kFailed,            E::kProcessPaymentFaulted,  Always,         Nothing,             S::kFailed,            kIgnore, "duplicate"},
Row{S::kCompleted,         E::kOrderSubmitted,         Always,         Nothing,             S::kCompleted,         kIgnore, "duplicate"},
Row{S::kCompleted,         E::kPaymentAccepted,        Always,         Nothing,             S::kCompleted,         kIgnore, "duplicate"},
Row{S::kCompleted,         E::kStockReserved,          Always,         Nothing,             S::kCompleted,         kIgnore, "duplicate"},
Row{S::kCompleted,         E::kOrderTimeoutExpired,    Always,         Nothing,             S::kCompleted,         kIgnore, "late timeout"},
};
// clang-format on

}  // namespace

std::string_view StateName(OrderState state) {
    switch (state) {
        case OrderState::kInitial:
            return "Initial";
        case OrderState::kSubmitted:
            return "Submitted";
        case OrderState::kInventoryReserved:
            return "InventoryReserved";
        case OrderState::kCompleted:
            return "Completed";
        case OrderState::kFailed:
            return "Failed";
    }
    return "?";
}

std::optional<OrderState> ParseState(std::string_view name) {
    for (auto state : {OrderState::kInitial, OrderState::kSubmitted, OrderState::kInventoryReserved,
                       OrderState::kCompleted, OrderState::kFailed})
        if (StateName(state) == name) return state;
    return std::nullopt;
}

std::string_view EventName(OrderEventKind kind) {
    switch (kind) {
        case E::kOrderSubmitted:
            return "OrderSubmitted";
        case E::kStockReserved:
            return "StockReserved";
        case E::kStockShortage:
            return "StockShortage";
        case E::kPaymentAccepted:
            return "PaymentAccepted";
        case E::kPaymentFailed:
            return "PaymentFailed";
        case E::kOrderTimeoutExpired:
            return "OrderTimeoutExpired";
        case E::kCheckInventoryFaulted:
            return "Fault<CheckInventory>";
        case E::kProcessPaymentFaulted:
            return "Fault<ProcessPayment>";
        case E::kStockReleased:
            return "StockReleased";
        case E::kPaymentRefunded:
            return "PaymentRefunded";
    }
    return "?";
}

SagaTransition Decide(const OrderSagaInstance& instance, const OrderEvent& event, const SagaOptions& options,
                      Timestamp now, const std::string& new_token) {
    const Context context{event, options, now, new_token};
    SagaTransition transition;
    transition.next = instance;
    for (const Row& row : kOrderSagaTable) {
        if (row.from != instance.state || row.event != event.kind || !row.guard(instance, context)) continue;
        transition.disposition = row.disposition;
        transition.row = row.name;
        if (row.disposition == Disposition::kApplied) {
            row.action(transition, context);
            transition.next.state = row.to;
            transition.next.updated_at = now;
        }
        return transition;
    }
    // The catch-all: no row for this pair.
    transition.disposition = Disposition::kUnhandled;
    transition.row = "unhandled";
    return transition;
}

std::string OrderSagaMermaid() {
    std::string out = "stateDiagram-v2\n    [*] --> Initial\n";
    for (const Row& row : kOrderSagaTable) {
        if (row.disposition != Disposition::kApplied) continue;
        out += "    " + std::string(StateName(row.from)) + " --> " + std::string(StateName(row.to)) + " : " +
               std::string(EventName(row.event));
        if (row.guard == CurrentTimeout) out += " [current token]";
        out += "\n";
    }
    out += "    Completed --> [*]\n";
    return out;
}

namespace {
std::string CommandName(const SagaCommand& command) {
    return std::visit(
        [](const auto& message) { return contracts::MessageContract<std::decay_t<decltype(message)>>::Name().name; },
        command);
}
}  // namespace

std::string OrderSagaPublishTable() {
    std::string out = "| from | event | to | publishes | timeout |\n|---|---|---|---|---|\n";
    for (const Row& row : kOrderSagaTable) {
        if (row.disposition != Disposition::kApplied) continue;
        OrderSagaInstance instance;
        const auto order_id = contracts::OrderId::Parse("order").value();
        instance.order_id = order_id;
        instance.state = row.from;
        instance.timeout_token = "token";
        OrderEvent event{.kind = row.event,
                         .order_id = order_id,
                         .reason = "reason",
                         .timeout_token = "token",
                         .transaction_id = "transaction"};
        if (row.event == E::kOrderSubmitted) event.submitted = contracts::OrderSubmitted{};
        const SagaTransition transition = Decide(instance, event, SagaOptions{}, Timestamp{}, "new-token");
        std::string published;
        for (const auto& command : transition.commands)
            published += (published.empty() ? "`" : ", `") + CommandName(command) + "`";
        if (published.empty()) published = "nothing";
        const char* timeout = transition.timeout == TimeoutChange::kSchedule ? "scheduled"
                              : transition.timeout == TimeoutChange::kCancel ? "cancelled"
                                                                             : "";
        out += "| " + std::string(StateName(row.from)) + " | `" + std::string(EventName(row.event)) + "`" +
               (row.guard == CurrentTimeout ? " (current token)" : "") + " | " + std::string(StateName(row.to)) +
               (transition.finalize ? " (row deleted)" : "") + " | " + published + " | " + timeout + " |\n";
    }
    return out;
}

}  // namespace order_service
