#include "PaymentService/PaymentSettings.h"

namespace payment_service {

contracts::OrderedJson PaymentSettings::ToJson() const {
    contracts::OrderedJson json;
    WriteCommonSections(json);
    json["Admin"] = admin.ToJson();
    auto& simulation_json = json["Simulation"];
    simulation_json["DeclineSuffixes"] = simulation.decline_suffixes;
    simulation_json["DeclineReason"] = simulation.decline_reason;
    simulation_json["GatewayDownSuffixes"] = simulation.gateway_down_suffixes;
    simulation_json["GatewayDownMessage"] = simulation.gateway_down_message;
    simulation_json["CrashSuffixes"] = simulation.crash_suffixes;
    simulation_json["TransientFailures"] = contracts::OrderedJson::array();
    for (const auto& rule : simulation.transient_failures)
        simulation_json["TransientFailures"].push_back(
            {{"Suffix", std::string(1, rule.suffix)}, {"FailedAttempts", rule.failed_attempts}});
    return json;
}

PaymentSettings PaymentSettings::FromJson(const contracts::Json& json) {
    PaymentSettings settings;
    settings.ReadCommonSections(json);
    settings.admin = messaging::AdminSettings::FromJson(json.at("Admin"));
    const auto& simulation = json.at("Simulation");
    settings.simulation.decline_suffixes = messaging::SettingString(simulation, "DeclineSuffixes");
    settings.simulation.decline_reason = messaging::SettingString(simulation, "DeclineReason");
    settings.simulation.gateway_down_suffixes = messaging::SettingString(simulation, "GatewayDownSuffixes");
    settings.simulation.gateway_down_message = messaging::SettingString(simulation, "GatewayDownMessage");
    if (simulation.contains("CrashSuffixes"))
        settings.simulation.crash_suffixes = messaging::SettingString(simulation, "CrashSuffixes");
    for (const auto& rule : simulation.at("TransientFailures")) {
        const auto* suffix = contracts::FindField(rule, "Suffix");
        const auto* attempts = contracts::FindField(rule, "FailedAttempts");
        if (!rule.is_object() || rule.size() != 2 || !suffix || !suffix->is_string() ||
            suffix->get<std::string>().size() != 1 || !attempts || !attempts->is_number_integer() ||
            attempts->get<int>() < 0)
            throw messaging::SettingsError(
                "setting 'Simulation.TransientFailures' entries must be {\"Suffix\": \"<one character>\", "
                "\"FailedAttempts\": <n >= 0>}");
        settings.simulation.transient_failures.push_back({suffix->get<std::string>()[0], attempts->get<int>()});
    }
    return settings;
}

}  // namespace payment_service
