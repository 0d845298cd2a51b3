// InventoryService as a library: the CheckInventory and ReleaseStock consumers on the
// `inventory-service` endpoint, over a StockLedger, with the simulation rules of the wire contract
// (A4). main.cpp and the tests build one of these on an event loop and a transport.
#pragma once

#include <memory>

#include "Bus/Bus.h"
#include "Hosting/ServiceHealth.h"
#include "InventoryService/InventorySettings.h"
#include "InventoryService/StockLedger.h"

namespace inventory_service {

class InventoryServiceHost {
  public:
    InventoryServiceHost(messaging::EventLoop& loop, messaging::Transport& transport, InventorySettings settings);
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
    StockLedger& ledger() { return ledger_; }

  private:
    void OnCheckInventory(messaging::ConsumeContext& context, const contracts::CheckInventory& command);
    void OnReleaseStock(messaging::ConsumeContext& context, const contracts::ReleaseStock& command);

    InventorySettings settings_;
    metrics::MetricsRegistry metrics_;
    messaging::SqliteDatabase db_;
    std::unique_ptr<messaging::UnitOfWork> unit_of_work_;
    StockLedger ledger_;
    messaging::Bus bus_;
};

}  // namespace inventory_service
