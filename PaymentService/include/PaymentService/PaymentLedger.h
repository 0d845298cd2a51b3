// The payments taken, one row per order in SQLite: a redelivered ProcessPayment finds its row and
// gets the same answer, so no order is ever charged twice.
#pragma once

#include <optional>
#include <string>

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
};

class PaymentLedger {
  public:
    explicit PaymentLedger(messaging::SqliteDatabase& db);
    std::optional<PaymentRecord> Find(const contracts::OrderId& order_id);
    void Record(const PaymentRecord& record);
    std::int64_t CountCharges();  // accepted payments, for tests and diagnostics

  private:
    messaging::SqliteDatabase& db_;
};

}  // namespace payment_service
