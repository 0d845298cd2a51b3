// PaymentService as a library: the ProcessPayment and RefundPayment consumers on the `payment-service`
// endpoint, over a PaymentLedger and a simulated gateway driven by the configured rules. A gateway
// failure throws, so the endpoint's retry policy runs and, when it gives up, Fault<ProcessPayment> and
// `_error` follow. A ProcessPayment past its deadline (the envelope's expirationTime, which the saga
// sets to the order's timeout) is declined without calling the gateway.
#pragma once

#include <map>
#include <memory>

#include "Bus/Bus.h"
#include "Hosting/ServiceHealth.h"
#include "PaymentService/PaymentLedger.h"
#include "PaymentService/PaymentSettings.h"

namespace payment_service {

// Why a ProcessPayment that came after its deadline was declined.
inline constexpr const char* kDeadlinePassedReason = "Payment deadline passed";

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
    // What its /health reports: the broker, its endpoint, its database. Loop thread.
    messaging::HealthReport Health() {
        return messaging::ReadHealth(bus_, [this] { return db_.CheckHealth(); });
    }
    messaging::SqliteDatabase& database() { return db_; }
    // Where its bus records metrics; none when they are off (Metrics.Enabled).
    metrics::MetricsRegistry* metrics() { return settings_.MetricsOrNone(metrics_); }
    PaymentLedger& ledger() { return ledger_; }
    // How many times the simulated gateway was called (every attempt, including failed ones).
    std::uint64_t gateway_calls() const { return gateway_calls_; }

  private:
    void OnProcessPayment(messaging::ConsumeContext& context, const contracts::ProcessPayment& command);
    void OnRefundPayment(messaging::ConsumeContext& context, const contracts::RefundPayment& command);

    PaymentSettings settings_;
    metrics::MetricsRegistry metrics_;
    messaging::SqliteDatabase db_;
    std::unique_ptr<messaging::UnitOfWork> unit_of_work_;
    PaymentLedger ledger_;
    messaging::Bus bus_;
    std::uint64_t gateway_calls_ = 0;
};

}  // namespace payment_service
