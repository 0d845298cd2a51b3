#include "InventoryService/StockLedger.h"

#include "Contracts/Identifiers.h"

namespace inventory_service {
namespace {

const char* StatusName(ReservationStatus status) {
    switch (status) {
        case ReservationStatus::kReserved:
            return "Reserved";
        case ReservationStatus::kShortage:
            return "Shortage";
        case ReservationStatus::kReleased:
            return "Released";
    }
    return "?";
}

ReservationStatus ParseStatus(const std::string& name) {
    if (name == "Reserved") return ReservationStatus::kReserved;
    if (name == "Shortage") return ReservationStatus::kShortage;
    return ReservationStatus::kReleased;
}

}  // namespace

StockLedger::StockLedger(messaging::SqliteDatabase& db) : db_(db) {
    messaging::MigrateSchema(db_, "InventoryService",
                             {"CREATE TABLE IF NOT EXISTS reservations ("
                              " order_id TEXT PRIMARY KEY,"
                              " status TEXT NOT NULL,"
                              " reason TEXT NOT NULL DEFAULT '',"
                              " updated_at TEXT NOT NULL)"});
}

std::optional<ReservationStatus> StockLedger::StatusOf(const contracts::OrderId& order_id) {
    auto& select = db_.Prepare("SELECT status FROM reservations WHERE order_id = ?1");
    select.Bind(1, order_id.str());
    std::optional<ReservationStatus> status;
    if (select.Step()) status = ParseStatus(select.Text(0));
    select.Reset();
    return status;
}

ReservationResult StockLedger::Reserve(const contracts::OrderId& order_id, bool in_stock,
                                       const std::string& shortage_reason) {
    auto& select = db_.Prepare("SELECT status, reason FROM reservations WHERE order_id = ?1");
    select.Bind(1, order_id.str());
    if (select.Step()) {
        ReservationResult existing{ParseStatus(select.Text(0)), false, select.Text(1)};
        select.Reset();
        return existing;
    }
    select.Reset();
    const ReservationStatus status = in_stock ? ReservationStatus::kReserved : ReservationStatus::kShortage;
    const std::string reason = in_stock ? "" : shortage_reason;
    db_.Prepare("INSERT INTO reservations (order_id, status, reason, updated_at) VALUES (?1, ?2, ?3, ?4)")
        .Bind(1, order_id.str())
        .Bind(2, StatusName(status))
        .Bind(3, reason)
        .Bind(4, contracts::FormatIso8601(contracts::UtcNow()))
        .Run();
    return {status, true, reason};
}

bool StockLedger::Release(const contracts::OrderId& order_id) {
    const std::string now = contracts::FormatIso8601(contracts::UtcNow());
    auto& update = db_.Prepare(
        "UPDATE reservations SET status = 'Released', updated_at = ?2 WHERE order_id = ?1 AND status = 'Reserved'");
    update.Bind(1, order_id.str()).Bind(2, now).Run();
    if (db_.Changes() > 0) return true;
    // Nothing reserved yet: leave a tombstone so a CheckInventory that arrives later reserves nothing.
    db_.Prepare(
           "INSERT INTO reservations (order_id, status, reason, updated_at) VALUES (?1, 'Released', "
           "'Released before it was reserved', ?2) ON CONFLICT(order_id) DO NOTHING")
        .Bind(1, order_id.str())
        .Bind(2, now)
        .Run();
    return false;
}

}  // namespace inventory_service
