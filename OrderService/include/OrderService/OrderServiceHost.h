// OrderService as a library: the saga on the `order-service` endpoint, its SQLite repository, the
// timeout scheduler, the outbox relay and the HTTP API, wired on one event loop and one transport.
// main.cpp and the tests build one of these; it holds no decisions of its own.
#pragma once

#include <memory>

#include "Bus/Bus.h"
#include "Hosting/ServiceHealth.h"
#include "OrderService/OrderHttpApi.h"
#include "OrderService/OrderMetrics.h"
#include "OrderService/OrderRepository.h"
#include "OrderService/OrderSagaConsumer.h"
#include "OrderService/OrderSettings.h"
#include "OrderService/OrderSubmission.h"
#include "OrderService/OutboxRelay.h"
#include "OrderService/TimeoutScheduler.h"

namespace order_service {

class OrderServiceHost {
  public:
    OrderServiceHost(messaging::EventLoop& loop, messaging::Transport& transport, OrderSettings settings);
    ~OrderServiceHost();

    // Loop thread: declares topology, starts consuming, restores timeouts and the outbox.
    messaging::Status Start();
    // Starts the HTTP API (any thread); returns the port it listens on.
    int StartHttp();
    // Loop thread: stops taking HTTP requests and messages; `stopped` runs when nothing is in flight.
    void Stop(std::function<void()> stopped);

    messaging::Bus& bus() { return bus_; }
    // What its /health reports: the broker, its endpoint, its database. Loop thread.
    messaging::HealthReport Health() {
        return messaging::ReadHealth(bus_, [this] { return db_.CheckHealth(); });
    }
    messaging::SqliteDatabase& database() { return db_; }
    // Where its bus records metrics; none when they are off (Metrics.Enabled).
    metrics::MetricsRegistry* metrics() { return settings_.MetricsOrNone(metrics_); }
    OrderRepository& repository() { return repository_; }
    OrderSagaConsumer& saga() { return saga_; }
    TimeoutScheduler& timeouts() { return timeouts_; }
    OrderSubmission& submission() { return submission_; }
    OrderLookup& lookup() { return lookup_; }
    const OrderSettings& settings() const { return settings_; }

  private:
    void SendTimeout(const contracts::OrderId& order_id, const std::string& token);

    messaging::EventLoop& loop_;
    OrderSettings settings_;
    metrics::MetricsRegistry metrics_;
    messaging::SqliteDatabase db_;
    std::unique_ptr<messaging::UnitOfWork> unit_of_work_;
    OrderRepository repository_;
    messaging::Bus bus_;
    TimeoutScheduler timeouts_;
    std::unique_ptr<OrderMetrics> order_metrics_;  // when metrics are on
    OutboxRelay relay_;
    OrderSagaConsumer saga_;
    OrderSubmission submission_;
    OrderLookup lookup_;
    std::unique_ptr<OrderHttpApi> http_;
};

}  // namespace order_service
