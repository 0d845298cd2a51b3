// PaymentService as a library: the ProcessPayment consumer on the `payment-service` endpoint, over a
// PaymentLedger and a simulated gateway driven by the configured rules. A gateway failure throws, so
// the endpoint's retry policy runs and, when it gives up, Fault<ProcessPayment> and `_error` follow.
#pragma once

#include <map>
#include <memory>

#include "Bus/Bus.h"
#include "PaymentService/PaymentLedger.h"
#include "PaymentService/PaymentSettings.h"

namespace payment_service {

class PaymentGatewayUnavailable : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class PaymentServiceHost {
  public:
    PaymentServiceHost(messaging::EventLoop& loop, messaging::Transport& transport, PaymentSettings settings);
    messaging::Status Start();
    void Stop(std::function<void()> stopped) { bus_.Stop(std::move(stopped)); }
    messaging::Bus& bus() { return bus_; }
    PaymentLedger& ledger() { return ledger_; }
    // How many times the gateway was called for an order (every attempt, including failed ones).
    int GatewayCalls(const std::string& order_id) const;

  private:
    void OnProcessPayment(messaging::ConsumeContext& context, const contracts::ProcessPayment& command);

    PaymentSettings settings_;
    messaging::SqliteDatabase db_;
    std::unique_ptr<messaging::UnitOfWork> unit_of_work_;
    PaymentLedger ledger_;
    messaging::Bus bus_;
    std::map<std::string, int> gateway_calls_;
};

}  // namespace payment_service
