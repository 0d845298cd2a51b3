// The order saga's decisions as a pure function: a stored instance plus an event give the next
// instance and the commands to publish. The whole state machine is one table (OrderSagaTable in
// OrderSaga.cpp) of from-state, event, guard, action and to-state rows; a pair with no row is an
// unhandled event, which faults like MassTransit's UnhandledEventException.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "Contracts/Messages.h"

namespace order_service {

enum class OrderState { kInitial, kSubmitted, kInventoryReserved, kCompleted, kFailed };

enum class OrderEventKind {
    kOrderSubmitted,
    kStockReserved,
    kStockShortage,
    kPaymentAccepted,
    kPaymentFailed,
    kOrderTimeoutExpired,
    kCheckInventoryFaulted,
    kProcessPaymentFaulted,
    kStockReleased,
    kPaymentRefunded,
};

std::string_view StateName(OrderState state);  // "Submitted"; stored by name
std::optional<OrderState> ParseState(std::string_view name);
std::string_view EventName(OrderEventKind kind);

struct OrderSagaInstance {
    contracts::OrderId order_id;  // the correlation id
    OrderState state = OrderState::kInitial;
    std::int64_t version = 0;  // optimistic concurrency: 0 = not stored yet
    std::string customer_number;
    contracts::Decimal total_amount;
    // From the OrderSubmitted that starts the saga, for the commands of that transition. Not stored
    // with the saga (no later transition needs them); the orders table keeps them.
    std::vector<contracts::OrderItem> items;
    std::string reason;
    std::string timeout_token;                   // the scheduled OrderTimeoutExpired that still counts
    std::optional<std::int64_t> timeout_due_ms;  // unix ms
    bool stock_released = false;
    bool payment_refunded = false;  // a payment taken after the order failed was given back
    std::string transaction_id;
    contracts::Timestamp created_at{};
    contracts::Timestamp updated_at{};
    // Ids of the latest messages applied to this instance, oldest first (at most kRememberedMessages):
    // a redelivered event is recognised here and changes nothing.
    std::vector<std::string> applied_message_ids;
    static constexpr std::size_t kRememberedMessages = 16;

    bool HasApplied(const std::string& message_id) const;
    void RememberApplied(const std::string& message_id);
};

struct OrderEvent {
    OrderEventKind kind{};
    contracts::OrderId order_id{};
    std::string reason{};                                  // shortage, payment failure, fault message
    std::optional<contracts::OrderSubmitted> submitted{};  // for kOrderSubmitted
    std::string timeout_token{};                           // for kOrderTimeoutExpired; empty = unknown (accepted)
    std::string transaction_id{};                          // for kPaymentAccepted
};

struct SagaOptions {
    std::chrono::milliseconds timeout{std::chrono::minutes(5)};
    std::string card_token = "tok_test_visa";
};

using SagaCommand = std::variant<contracts::CheckInventory, contracts::ProcessPayment, contracts::ReleaseStock,
                                 contracts::OrderCompleted, contracts::OrderFailed, contracts::RefundPayment>;

enum class Disposition { kApplied, kIgnored, kUnhandled };
enum class TimeoutChange { kNone, kSchedule, kCancel };

struct SagaTransition {
    Disposition disposition = Disposition::kUnhandled;
    OrderSagaInstance next;  // the instance after the event (unchanged unless applied)
    std::vector<SagaCommand> commands;
    TimeoutChange timeout = TimeoutChange::kNone;
    bool finalize = false;  // the instance is complete and its row is deleted
    std::string_view row;   // the table row that matched, for logs and observers
};

// `now` and `new_token` are inputs so the function stays pure and testable.
SagaTransition Decide(const OrderSagaInstance& instance, const OrderEvent& event, const SagaOptions& options,
                      contracts::Timestamp now, const std::string& new_token);

// The table as a Mermaid state diagram, for docs/saga.md.
std::string OrderSagaMermaid();
// The applied rows as a Markdown table of what each transition publishes and does to the timeout,
// worked out by running Decide() on each row, for docs/saga.md.
std::string OrderSagaPublishTable();

inline constexpr const char* kTimeoutReason = "Order timed out";
inline constexpr const char* kLatePaymentReason = "Payment accepted after the order failed";

}  // namespace order_service
