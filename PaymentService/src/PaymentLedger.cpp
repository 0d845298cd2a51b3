#include "PaymentService/PaymentLedger.h"

#include "Contracts/Identifiers.h"

namespace payment_service {

PaymentLedger::PaymentLedger(messaging::SqliteDatabase& db) : db_(db) {
    messaging::MigrateSchema(db_, "PaymentService",
                             {"CREATE TABLE IF NOT EXISTS payments ("
                              " order_id TEXT PRIMARY KEY,"
                              " accepted INTEGER NOT NULL,"
                              " transaction_id TEXT NOT NULL,"
                              " reason TEXT NOT NULL,"
                              " amount TEXT NOT NULL,"
                              " created_at TEXT NOT NULL)",
                              // Version 2: refunds (RefundPayment), at most one per payment.
                              "ALTER TABLE payments ADD COLUMN refunded_at TEXT"});
}

std::optional<PaymentRecord> PaymentLedger::Find(const contracts::OrderId& order_id) {
    auto& select =
        db_.Prepare("SELECT accepted, transaction_id, reason, amount, refunded_at FROM payments WHERE order_id = ?1");
    select.Bind(1, order_id.str());
    std::optional<PaymentRecord> record;
    if (select.Step()) {
        record = PaymentRecord{.order_id = order_id,
                               .accepted = select.Integer(0) != 0,
                               .transaction_id = select.Text(1),
                               .reason = select.Text(2),
                               .amount = contracts::Decimal::Parse(select.Text(3)).value_or(contracts::Decimal()),
                               .refunded = !select.IsNull(4)};
    }
    select.Reset();
    return record;
}

void PaymentLedger::Record(const PaymentRecord& record) {
    db_.Prepare(
           "INSERT INTO payments (order_id, accepted, transaction_id, reason, amount, created_at) "
           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .Bind(1, record.order_id.str())
        .Bind(2, record.accepted ? 1 : 0)
        .Bind(3, record.transaction_id)
        .Bind(4, record.reason)
        .Bind(5, record.amount.ToString())
        .Bind(6, contracts::FormatIso8601(contracts::UtcNow()))
        .Run();
}

bool PaymentLedger::MarkRefunded(const contracts::OrderId& order_id) {
    db_.Prepare("UPDATE payments SET refunded_at = ?2 WHERE order_id = ?1 AND accepted = 1 AND refunded_at IS NULL")
        .Bind(1, order_id.str())
        .Bind(2, contracts::FormatIso8601(contracts::UtcNow()))
        .Run();
    return db_.Changes() == 1;
}

std::int64_t PaymentLedger::CountRefunds() {
    return CountRows("SELECT COUNT(*) FROM payments WHERE refunded_at IS NOT NULL");
}

std::int64_t PaymentLedger::CountCharges() {
    return CountRows("SELECT COUNT(*) FROM payments WHERE accepted = 1");
}

std::int64_t PaymentLedger::CountRows(std::string_view count_sql) {
    auto& count = db_.Prepare(count_sql);
    count.Step();
    const auto n = count.Integer(0);
    count.Reset();
    return n;
}

}  // namespace payment_service
