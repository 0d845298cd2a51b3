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
    // How many times the simulated gateway was called (every attempt, including failed ones).
    std::uint64_t gateway_calls() const { return gateway_calls_; }

  private:
    void OnProcessPayment(messaging::ConsumeContext& context, const contracts::ProcessPayment& command);

    PaymentSettings settings_;
    messaging::SqliteDatabase db_;
    std::unique_ptr<messaging::UnitOfWork> unit_of_work_;
    PaymentLedger ledger_;
    messaging::Bus bus_;
    std::uint64_t gateway_calls_ = 0;
};

}  // namespace payment_service
