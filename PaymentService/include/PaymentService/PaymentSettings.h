// PaymentService's settings (appsettings/PaymentService.json), with their defaults, including the
// simulation rules keyed on the last character of the order id (wire contract A4).
#pragma once

#include <string>
#include <vector>

#include "Hosting/Settings.h"

namespace payment_service {

// "Fail the first `failed_attempts` attempts for ids ending in `suffix`, then succeed."
struct TransientFailureRule {
    char suffix = '5';
    int failed_attempts = 2;
};

struct PaymentSimulation {
    std::string decline_suffixes = "1";
    std::string decline_reason = "Credit card limit exceeded";
    std::string gateway_down_suffixes = "2";
    std::string gateway_down_message = "Payment gateway unavailable";
    std::vector<TransientFailureRule> transient_failures;
    // Ids ending in one of these end the process (abort) while their payment is processed: a poison
    // message, to see the redelivery limit move it to `_error`. Empty unless configured.
    std::string crash_suffixes;
};

struct PaymentSettings : messaging::ServiceSettings {
    PaymentSimulation simulation;
    messaging::AdminSettings admin;  // GET /health, /health/live, /health/ready

    PaymentSettings() : ServiceSettings("payment-service", "payment-service.db") { admin.port = 5002; }
    contracts::OrderedJson ToJson() const;
    static PaymentSettings FromJson(const contracts::Json& json);
    // Defaults, then the file (if any), then environment overrides.
    static PaymentSettings Load(const std::string& path, const std::vector<std::string>& environment) {
        return messaging::LoadServiceSettings<PaymentSettings>(path, environment);
    }
};

}  // namespace payment_service
