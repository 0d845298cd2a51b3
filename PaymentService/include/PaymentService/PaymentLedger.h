// The payments taken, one row per order in SQLite: a redelivered ProcessPayment finds its row and
// gets the same answer, so no order is ever charged twice; a refund is marked on the row, so none is
// ever given twice either.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "Contracts/Decimal.h"
#include "Contracts/Identifiers.h"
#include "Storage/Sqlite.h"

namespace payment_service {

struct PaymentRecord {
    contracts::OrderId order_id{};
    bool accepted = false;
    std::string transaction_id{};  // when accepted
    std::string reason{};          // when declined
    contracts::Decimal amount{};
    bool refunded = false;  // an accepted payment given back (RefundPayment)
};

class PaymentLedger {
  public:
    explicit PaymentLedger(messaging::SqliteDatabase& db);
    std::optional<PaymentRecord> Find(const contracts::OrderId& order_id);
    void Record(const PaymentRecord& record);
    // Marks the accepted payment of `order_id` refunded; false when it already was.
    bool MarkRefunded(const contracts::OrderId& order_id);
    std::int64_t CountCharges();  // accepted payments, for tests and diagnostics
    std::int64_t CountRefunds();  // refunded payments

  private:
    std::int64_t CountRows(std::string_view count_sql);  // a SELECT COUNT(*) statement's answer

    messaging::SqliteDatabase& db_;
};

}  // namespace payment_service
