// The embedded mode: all three services in one process on the in-memory bus, each with a database
// of its own. `OrderService --in-memory` and the benchmark's --embedded run use it; it is the one
// place that composes the three services.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "InventoryService/InventoryServiceHost.h"
#include "OrderService/OrderServiceHost.h"
#include "PaymentService/PaymentServiceHost.h"
#include "Transport/InMemoryTransport.h"

namespace embedded {

struct EmbeddedSettings {
    order_service::OrderSettings orders;
    inventory_service::InventorySettings inventory;
    payment_service::PaymentSettings payment;

    // Each service's settings from its own file in `config_dir` (OrderService.json, ...) and the
    // environment.
    static EmbeddedSettings Load(const std::filesystem::path& config_dir, const std::vector<std::string>& environment);
    // Gives the workers databases of their own wherever two services would share one
    // (Database__Path=x.db applies to all three): they get x-inventory.db and x-payment.db beside
    // it, because each service versions its own schema. EmbeddedSystem applies it to whatever
    // settings it is given.
    void SeparateDatabases();
};

class EmbeddedSystem {
  public:
    EmbeddedSystem(messaging::EventLoop& loop, EmbeddedSettings settings);
    ~EmbeddedSystem();

    // Starts the workers, then the order service (its HTTP API is started by StartHttp).
    messaging::Status Start();
    int StartHttp() { return orders_->StartHttp(); }
    // Stops the order service, then the workers; `stopped` runs once all have finished.
    void Stop(std::function<void()> stopped);

    messaging::InMemoryTransport& transport() { return transport_; }
    order_service::OrderServiceHost& orders() { return *orders_; }

  private:
    messaging::InMemoryTransport transport_;
    std::unique_ptr<inventory_service::InventoryServiceHost> inventory_;
    std::unique_ptr<payment_service::PaymentServiceHost> payment_;
    std::unique_ptr<order_service::OrderServiceHost> orders_;
};

}  // namespace embedded
