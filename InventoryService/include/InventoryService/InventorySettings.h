// InventoryService's settings (appsettings/InventoryService.json), with their defaults.
#pragma once

#include <string>

#include "Hosting/Settings.h"

namespace inventory_service {

struct InventorySimulation {
    // An order whose id ends in one of these characters is out of stock.
    std::string shortage_suffixes = "0";
    std::string shortage_reason = "Out of stock";
};

struct InventorySettings : messaging::ServiceSettings {
    InventorySimulation simulation;
    messaging::AdminSettings admin;  // GET /health, /health/live, /health/ready

    InventorySettings() : ServiceSettings("inventory-service", "inventory-service.db") { admin.port = 5001; }
    contracts::OrderedJson ToJson() const;
    static InventorySettings FromJson(const contracts::Json& json);
    // Defaults, then the file (if any), then environment overrides.
    static InventorySettings Load(const std::string& path, const std::vector<std::string>& environment) {
        return messaging::LoadServiceSettings<InventorySettings>(path, environment);
    }
};

}  // namespace inventory_service
