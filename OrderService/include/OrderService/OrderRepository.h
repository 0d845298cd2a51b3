// OrderService's SQLite storage: saga instances (state stored by name, optimistic-concurrency
// version column), the orders table that keeps each order's outcome after its saga is finalized, the
// outbox of messages committed with the state that produced them. The schema is created at start,
// versioned with PRAGMA user_version and migrated step by step. The writes that must be atomic, an
// accepted order and a saga transition, are one call each, which holds the transaction: nothing
// above the repository opens one.
#pragma once

#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "Bus/Bus.h"
#include "OrderService/OrderSaga.h"
#include "Storage/Sqlite.h"

namespace order_service {

// Another writer changed the saga row first; retrying the message reloads it.
class ConcurrencyConflict : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// What GET /order/{id} reports: kAccepted from POST /order until the saga picks the order up, then
// the saga's state. Stored and answered by name ("Accepted", "Submitted", ...).
enum class OrderStatus { kAccepted, kSubmitted, kInventoryReserved, kCompleted, kFailed };
std::string_view StatusName(OrderStatus status);
std::optional<OrderStatus> ParseStatus(std::string_view name);
OrderStatus StatusOf(OrderState state);  // kInitial never reaches the orders table: kAccepted
inline bool IsFinal(OrderStatus status) {
    return status == OrderStatus::kCompleted || status == OrderStatus::kFailed;
}

struct OrderRecord {
    contracts::OrderId order_id{};
    OrderStatus status = OrderStatus::kAccepted;
    std::string reason{};
    std::string customer_number{};
    contracts::Decimal total_amount{};
    std::vector<contracts::OrderItem> items{};
    std::string transaction_id{};
    contracts::Timestamp created_at{};
    contracts::Timestamp updated_at{};
};

struct PendingTimeout {
    contracts::OrderId order_id;
    std::string token;
    std::int64_t due_ms = 0;
};

// The outbox at a glance: its rows, and when the oldest one's message was written (its sentTime).
struct OutboxSummary {
    std::int64_t rows = 0;
    std::optional<contracts::Timestamp> oldest_written;
};

struct OutboxEntry {
    std::int64_t sequence = 0;
    messaging::OutgoingMessage message;
};

class OrderRepository {
  public:
    static constexpr int kSchemaVersion = 4;

    explicit OrderRepository(messaging::SqliteDatabase& db);  // creates or migrates the schema

    // POST /order's write, one transaction: the order, accepted, with its OrderSubmitted in the
    // outbox. When the id is stored already nothing is written, and the stored order comes back.
    struct Acceptance {
        bool stored = false;
        std::int64_t outbox_sequence = 0;     // the OrderSubmitted's outbox row, when stored
        std::optional<OrderRecord> existing;  // when not: the order stored before under the same id
    };
    Acceptance AcceptOrder(const OrderRecord& order, const messaging::OutgoingMessage& submitted);

    // A saga transition's writes, one transaction: `next` saved, or, when `finalize`, the row deleted
    // (if it was ever stored: `stored_version` > 0); the order's outcome; `outgoing` added to the
    // outbox in order. Returns their outbox sequences. Throws ConcurrencyConflict and writes nothing
    // when another writer changed the row first.
    std::vector<std::int64_t> SaveTransition(const OrderSagaInstance& next, bool finalize, std::int64_t stored_version,
                                             const std::vector<messaging::OutgoingMessage>& outgoing);

    // The parts of those writes, each on its own (inside the caller's transaction, if any).
    // The stored instance; its `items` are empty (the saga row does not keep them).
    std::optional<OrderSagaInstance> LoadSaga(const contracts::OrderId& order_id);
    // Inserts a new instance (version 0) or updates one whose stored version is still
    // instance.version; the stored version becomes instance.version + 1. Throws ConcurrencyConflict.
    // An update writes what a transition can change: the customer, amount and creation time stay as
    // they were inserted.
    void SaveSaga(const OrderSagaInstance& instance);
    void DeleteSaga(const contracts::OrderId& order_id, std::int64_t expected_version);

    std::optional<OrderRecord> FindOrder(const contracts::OrderId& order_id);
    std::optional<OrderStatus> FindOrderStatus(const contracts::OrderId& order_id);  // FindOrder(...)->status
    bool InsertOrderIfAbsent(const OrderRecord& order);                              // false when the id exists
    void UpsertOrderFromSaga(const OrderSagaInstance& instance);

    std::int64_t AddToOutbox(const messaging::OutgoingMessage& message);
    void RemoveFromOutbox(const std::vector<std::int64_t>& sequences);
    std::vector<OutboxEntry> PendingOutbox(std::size_t limit);
    OutboxSummary SummarizeOutbox();

    // The stored saga instances of each state (a full scan: read once, at start).
    std::map<OrderState, std::int64_t> CountSagasByState();

    std::vector<PendingTimeout> PendingTimeouts();

  private:
    messaging::SqliteDatabase& db_;
};

}  // namespace order_service
