// InventoryService's settings (appsettings/InventoryService.json), with their defaults.
#pragma once

#include <string>

#include "Messaging/Settings.h"

namespace inventory_service {

struct InventorySimulation {
    // An order whose id ends in one of these characters is out of stock.
    std::string shortage_suffixes = "0";
    std::string shortage_reason = "Out of stock";
};

struct InventorySettings {
    messaging::RabbitMqSettings rabbitmq;
    messaging::ReceiveEndpointSettings endpoint{"inventory-service", 16,
                                                messaging::RetryPolicy::Interval(3, std::chrono::milliseconds(500))};
    messaging::DatabaseSettings database{"inventory-service.db", messaging::SqliteSync::kNormal};
    InventorySimulation simulation;
    std::string log_level = "info";

    contracts::OrderedJson ToJson() const;
    static InventorySettings FromJson(const contracts::Json& json);
    // Defaults, then the file (if any), then environment overrides.
    static InventorySettings Load(const std::string& path, const std::vector<std::string>& environment);
};

}  // namespace inventory_service
