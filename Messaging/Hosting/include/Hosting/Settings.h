// Loading a service's settings the .NET way: the struct's defaults, overlaid by its appsettings JSON
// file, overlaid by environment variables such as `RabbitMQ__Host=broker`. An unknown key or a value
// of the wrong type stops the service at start with a SettingsError naming the key.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <spdlog/formatter.h>

#include "Bus/Bus.h"
#include "Contracts/JsonFields.h"
#include "RabbitMq/RabbitMqSettings.h"
#include "Storage/Sqlite.h"

namespace messaging {

class SettingsError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct SettingsSources {
    std::string file_path;                     // empty: defaults and environment only
    std::vector<std::string> environment;      // "NAME=VALUE" entries, usually from environ
    std::vector<std::string> opaque_sections;  // keys whose objects are taken whole (e.g. "Retry")
};

// Returns `defaults` with the file and the environment applied, keyed exactly as in `defaults`.
contracts::Json LoadSettingsJson(const contracts::Json& defaults, const SettingsSources& sources);

// The process environment as "NAME=VALUE" entries.
std::vector<std::string> ProcessEnvironment();

contracts::OrderedJson RabbitMqSettingsToJson(const RabbitMqSettings& settings);
RabbitMqSettings RabbitMqSettingsFromJson(const contracts::Json& json);

// {"Queue": "inventory-service", "PrefetchCount": 16, "Retry": {"Policy": "Interval", ...},
//  "QueueType": "Classic" or "Quorum", "QuorumInitialGroupSize": 0 (the broker's default) or a size,
//  "QueueArguments": {"x-...": value}, "Serializer": "Envelope" (MassTransit's JSON envelope) or
//  "RawJson" (as its UseRawJsonSerializer on the endpoint), ...}
contracts::OrderedJson EndpointSettingsToJson(const ReceiveEndpointSettings& settings);
ReceiveEndpointSettings EndpointSettingsFromJson(const contracts::Json& json);

struct DatabaseSettings {
    std::string path;
    SqliteSync synchronous = SqliteSync::kNormal;  // "Normal" (safe against a process crash) or "Full" (power loss)
    // One transaction for all the messages (and requests) of a loop turn; false commits each on its own.
    bool group_commit = true;
    contracts::OrderedJson ToJson() const;
    static DatabaseSettings FromJson(const contracts::Json& json);
};

// A worker's admin HTTP listener (the Admin section): its health answers, see AdminServer.
struct AdminSettings {
    bool enabled = true;
    std::string host = "0.0.0.0";
    int port = 0;  // 0 picks a free port (tests); each worker's default is its own
    contracts::OrderedJson ToJson() const;
    static AdminSettings FromJson(const contracts::Json& json);
};

// Where a service's bus keeps its consumer journal (BusSettings::consumer_journal_path): beside its
// database, as `<Database.Path>-consumer`; none for an in-memory database.
std::string ConsumerJournalPath(const DatabaseSettings& database);

// Logging.Format: "Text" (one line of text) or "Json" (one JSON object a line).
enum class LogFormat { kText, kJson };

// The sections every service's settings have: RabbitMQ, Endpoint, Database, Tracing, Metrics and Logging. A
// service's settings struct derives from it and adds its own sections.
struct ServiceSettings {
    RabbitMqSettings rabbitmq;
    ReceiveEndpointSettings endpoint;
    DatabaseSettings database;
    bool propagate_trace = true;  // Tracing.Propagate: BusSettings::propagate_trace
    bool metrics_enabled = true;  // Metrics.Enabled: the bus records its metrics and /metrics serves them
    std::string log_level = "info";
    LogFormat log_format = LogFormat::kText;  // Logging.Format

    // The service's own queue and database file; every other default is shared.
    ServiceSettings(std::string queue, std::string database_path);
    void WriteCommonSections(contracts::OrderedJson& json) const;
    void ReadCommonSections(const contracts::Json& json);  // json as LoadSettingsJson returned it
    // The bus settings these give the service named `service_name`: its consumer journal beside the
    // database, whether it propagates traces, and `metrics` as where it records them when they are on.
    BusSettings BusSettingsFor(std::string service_name, metrics::MetricsRegistry* metrics = nullptr) const;
    // `registry` when metrics are on, else none.
    metrics::MetricsRegistry* MetricsOrNone(metrics::MetricsRegistry& registry) const {
        return metrics_enabled ? &registry : nullptr;
    }
};

// A service's settings: the defaults of `Settings{}`, overlaid by the file at `path` (none when
// empty), overlaid by `environment` ("NAME=VALUE" entries).
template <class Settings>
Settings LoadServiceSettings(const std::string& path, const std::vector<std::string>& environment) {
    const contracts::Json defaults = contracts::Json::parse(Settings{}.ToJson().dump());
    return Settings::FromJson(LoadSettingsJson(defaults, {path, environment, {"Retry", "QueueArguments"}}));
}

// Reads a typed value from a settings object already validated by LoadSettingsJson.
std::string SettingString(const contracts::Json& json, const char* key);
int SettingInt(const contracts::Json& json, const char* key, int min, int max);

// Log lines as "<UTC time> <level> <service> trace=<id> message=<id> order=<id> <text>": the fields
// are those of the current LogScope, so lines about a message or request carry its trace id, message
// id and order id.
std::unique_ptr<spdlog::formatter> LogFormatter(const std::string& service_name);
// The same as one JSON object a line, for Loki or Elasticsearch to take as it is:
// {"time","level","service","traceId","messageId","orderId",...,"message"}; a field of the scope
// without a name of its own keeps its name.
std::unique_ptr<spdlog::formatter> JsonLogFormatter(const std::string& service_name);
void ConfigureLogging(const std::string& service_name, const std::string& level, LogFormat format = LogFormat::kText);

}  // namespace messaging
