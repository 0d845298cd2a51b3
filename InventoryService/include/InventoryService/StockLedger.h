// The inventory's record of reservations, one row per order in SQLite, which makes the consumers
// idempotent: a repeated CheckInventory answers as before, a repeated ReleaseStock releases once,
// and a ReleaseStock that arrives before its CheckInventory blocks the later reservation.
#pragma once

#include <string>

#include "Contracts/Identifiers.h"
#include "Storage/Sqlite.h"

namespace inventory_service {

enum class ReservationStatus { kReserved, kShortage, kReleased };

struct ReservationResult {
    ReservationStatus status;
    bool newly_recorded;  // false when the order was seen before
    std::string reason;   // for a shortage
};

class StockLedger {
  public:
    explicit StockLedger(messaging::SqliteDatabase& db);

    // Records a reservation (or a shortage) unless the order already has a record.
    ReservationResult Reserve(const contracts::OrderId& order_id, bool in_stock, const std::string& shortage_reason);
    // Releases a reservation; true when this call released it (false if already released or never reserved).
    bool Release(const contracts::OrderId& order_id);
    std::optional<ReservationStatus> StatusOf(const contracts::OrderId& order_id);

  private:
    messaging::SqliteDatabase& db_;
};

}  // namespace inventory_service
