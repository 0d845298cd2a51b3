#include "InventoryService/InventorySettings.h"

namespace inventory_service {

contracts::OrderedJson InventorySettings::ToJson() const {
    contracts::OrderedJson json;
    json["RabbitMQ"] = rabbitmq.ToJson();
    json["Endpoint"] = messaging::EndpointSettingsToJson(endpoint);
    json["Database"] = database.ToJson();
    json["Simulation"]["ShortageSuffixes"] = simulation.shortage_suffixes;
    json["Simulation"]["ShortageReason"] = simulation.shortage_reason;
    json["Logging"]["Level"] = log_level;
    return json;
}

InventorySettings InventorySettings::FromJson(const contracts::Json& json) {
    InventorySettings settings;
    settings.rabbitmq = messaging::RabbitMqSettings::FromJson(json.at("RabbitMQ"));
    settings.endpoint = messaging::EndpointSettingsFromJson(json.at("Endpoint"));
    settings.database = messaging::DatabaseSettings::FromJson(json.at("Database"));
    settings.simulation.shortage_suffixes = messaging::SettingString(json.at("Simulation"), "ShortageSuffixes");
    settings.simulation.shortage_reason = messaging::SettingString(json.at("Simulation"), "ShortageReason");
    settings.log_level = messaging::SettingString(json.at("Logging"), "Level");
    return settings;
}

InventorySettings InventorySettings::Load(const std::string& path, const std::vector<std::string>& environment) {
    const contracts::Json defaults = contracts::Json::parse(InventorySettings{}.ToJson().dump());
    return FromJson(messaging::LoadSettingsJson(defaults, {path, environment, {"Retry"}}));
}

}  // namespace inventory_service
