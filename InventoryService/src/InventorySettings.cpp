#include "InventoryService/InventorySettings.h"

namespace inventory_service {

contracts::OrderedJson InventorySettings::ToJson() const {
    contracts::OrderedJson json;
    WriteCommonSections(json);
    json["Admin"] = admin.ToJson();
    json["Simulation"]["ShortageSuffixes"] = simulation.shortage_suffixes;
    json["Simulation"]["ShortageReason"] = simulation.shortage_reason;
    return json;
}

InventorySettings InventorySettings::FromJson(const contracts::Json& json) {
    InventorySettings settings;
    settings.ReadCommonSections(json);
    settings.admin = messaging::AdminSettings::FromJson(json.at("Admin"));
    settings.simulation.shortage_suffixes = messaging::SettingString(json.at("Simulation"), "ShortageSuffixes");
    settings.simulation.shortage_reason = messaging::SettingString(json.at("Simulation"), "ShortageReason");
    return settings;
}

}  // namespace inventory_service
