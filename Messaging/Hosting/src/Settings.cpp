#include "Hosting/Settings.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <fstream>
#include <sstream>

extern char** environ;

namespace messaging {
namespace {

using contracts::EqualsIgnoreCase;
using contracts::Json;

// The key of `object` equal to `name` ignoring case, or empty.
std::string MatchKey(const Json& object, const std::string& name) {
    for (auto it = object.begin(); it != object.end(); ++it)
        if (EqualsIgnoreCase(it.key(), name)) return it.key();
    return {};
}

const char* TypeName(const Json& value) {
    if (value.is_string()) return "a string";
    if (value.is_boolean()) return "true or false";
    if (value.is_number_integer()) return "an integer";
    if (value.is_array()) return "an array";
    if (value.is_object()) return "an object";
    return "a value";
}

bool SameKind(const Json& expected, const Json& actual) {
    if (expected.is_number_integer()) return actual.is_number_integer();
    if (expected.is_string()) return actual.is_string();
    if (expected.is_boolean()) return actual.is_boolean();
    if (expected.is_array()) return actual.is_array();
    if (expected.is_object()) return actual.is_object();
    return true;
}

bool IsOpaque(const SettingsSources& sources, const std::string& key) {
    return std::any_of(sources.opaque_sections.begin(), sources.opaque_sections.end(),
                       [&](const std::string& opaque) { return EqualsIgnoreCase(opaque, key); });
}

void Overlay(Json& target, const Json& source, const std::string& path, const SettingsSources& sources,
             const std::string& origin) {
    for (auto it = source.begin(); it != source.end(); ++it) {
        const std::string key = MatchKey(target, it.key());
        const std::string full = path.empty() ? it.key() : path + "." + it.key();
        if (key.empty()) throw SettingsError(origin + ": unknown setting '" + full + "'");
        Json& slot = target[key];
        if (!SameKind(slot, it.value()))
            throw SettingsError(origin + ": setting '" + full + "' must be " + TypeName(slot));
        if (slot.is_object() && !IsOpaque(sources, key))
            Overlay(slot, it.value(), full, sources, origin);
        else
            slot = it.value();
    }
}

Json ParseEnvironmentValue(const Json& slot, const std::string& text, const std::string& name) {
    if (slot.is_string()) return text;
    if (slot.is_number_integer()) {
        try {
            std::size_t used = 0;
            const long long value = std::stoll(text, &used);
            if (used == text.size()) return value;
        } catch (...) {
        }
        throw SettingsError("environment variable " + name + " must be an integer, not '" + text + "'");
    }
    if (slot.is_boolean()) {
        if (EqualsIgnoreCase(text, "true")) return true;
        if (EqualsIgnoreCase(text, "false")) return false;
        throw SettingsError("environment variable " + name + " must be true or false");
    }
    Json parsed = Json::parse(text, nullptr, false);
    if (parsed.is_discarded() || !SameKind(slot, parsed))
        throw SettingsError("environment variable " + name + " must be JSON " + TypeName(slot));
    return parsed;
}

// An array index as .NET configuration keys write it ("0", "1", ...), at most 999.
std::optional<std::size_t> ArrayIndex(const std::string& segment) {
    if (segment.empty() || segment.size() > 3 ||
        !std::all_of(segment.begin(), segment.end(), [](unsigned char c) { return std::isdigit(c); }))
        return std::nullopt;
    return static_cast<std::size_t>(std::stoul(segment));
}

}  // namespace

Json LoadSettingsJson(const Json& defaults, const SettingsSources& sources) {
    Json settings = defaults;
    if (!sources.file_path.empty()) {
        std::ifstream file(sources.file_path);
        if (!file) throw SettingsError("cannot read settings file " + sources.file_path);
        std::stringstream text;
        text << file.rdbuf();
        Json parsed = Json::parse(text.str(), nullptr, false, /*ignore_comments=*/true);
        if (parsed.is_discarded() || !parsed.is_object())
            throw SettingsError(sources.file_path + ": not a valid JSON object");
        Overlay(settings, parsed, "", sources, sources.file_path);
    }
    for (const auto& entry : sources.environment) {
        const auto equals = entry.find('=');
        if (equals == std::string::npos) continue;
        const std::string name = entry.substr(0, equals);
        if (name.find("__") == std::string::npos) continue;
        std::vector<std::string> segments;
        for (std::size_t start = 0;;) {
            const auto next = name.find("__", start);
            segments.push_back(name.substr(start, next == std::string::npos ? std::string::npos : next - start));
            if (next == std::string::npos) break;
            start = next + 2;
        }
        // Variables for other programs are left alone: only ones naming one of our sections count.
        if (MatchKey(settings, segments.front()).empty()) continue;
        Json* slot = &settings;
        bool element = false;  // the slot is an array's element, named by its index as .NET binds them
        for (const auto& segment : segments) {
            if (slot->is_array()) {
                const auto index = ArrayIndex(segment);
                if (!index) throw SettingsError("environment variable " + name + ": '" + segment + "' is not an index");
                while (slot->size() <= *index) slot->push_back(Json());
                slot = &(*slot)[*index];
                element = true;
                continue;
            }
            const std::string key = slot->is_object() ? MatchKey(*slot, segment) : std::string();
            if (key.empty())
                throw SettingsError("environment variable " + name + ": unknown setting '" + segment + "'");
            slot = &(*slot)[key];
            element = false;
        }
        const std::string text = entry.substr(equals + 1);
        *slot = element ? Json(text) : ParseEnvironmentValue(*slot, text, name);
    }
    return settings;
}

std::vector<std::string> ProcessEnvironment() {
    std::vector<std::string> entries;
    for (char** variable = environ; variable && *variable; ++variable) entries.emplace_back(*variable);
    return entries;
}

std::string SettingString(const Json& json, const char* key) {
    return json.at(key).get<std::string>();
}

int SettingInt(const Json& json, const char* key, int min, int max) {
    const long long value = json.at(key).get<long long>();
    if (value < min || value > max)
        throw SettingsError(std::string("setting '") + key + "' must be between " + std::to_string(min) + " and " +
                            std::to_string(max));
    return static_cast<int>(value);
}

contracts::OrderedJson RabbitMqSettingsToJson(const RabbitMqSettings& settings) {
    contracts::OrderedJson json;
    json["Host"] = settings.host;
    json["Port"] = settings.port;
    json["Hosts"] = settings.hosts;
    json["VirtualHost"] = settings.virtual_host;
    json["Username"] = settings.username;
    json["Password"] = settings.password;
    json["HeartbeatSeconds"] = settings.heartbeat_seconds;
    json["ConnectionTimeoutSeconds"] = settings.connection_timeout_seconds;
    json["QueueCheckIntervalMs"] = settings.queue_check_interval_ms;
    return json;
}

RabbitMqSettings RabbitMqSettingsFromJson(const Json& json) {
    RabbitMqSettings settings;
    settings.host = SettingString(json, "Host");
    settings.port = SettingInt(json, "Port", 1, 65535);
    for (const auto& entry : json.at("Hosts")) {
        if (!entry.is_string() || !ParseBrokerNode(entry.get<std::string>(), settings.port))
            throw SettingsError("setting 'RabbitMQ.Hosts' must list nodes as \"host\" or \"host:port\", not " +
                                entry.dump());
        settings.hosts.push_back(entry.get<std::string>());
    }
    settings.virtual_host = SettingString(json, "VirtualHost");
    settings.username = SettingString(json, "Username");
    settings.password = SettingString(json, "Password");
    settings.heartbeat_seconds = SettingInt(json, "HeartbeatSeconds", 0, 3600);
    settings.connection_timeout_seconds = SettingInt(json, "ConnectionTimeoutSeconds", 1, 3600);
    settings.queue_check_interval_ms = SettingInt(json, "QueueCheckIntervalMs", 0, 3'600'000);
    if (settings.host.empty()) throw SettingsError("setting 'RabbitMQ.Host' must not be empty");
    return settings;
}

contracts::OrderedJson EndpointSettingsToJson(const ReceiveEndpointSettings& settings) {
    contracts::OrderedJson json;
    json["Queue"] = settings.queue;
    json["PrefetchCount"] = settings.prefetch;
    json["Retry"] = settings.retry.ToJson();
    HeaderTable others = settings.queue_arguments;
    const auto* type = FindHeader(others, "x-queue-type");
    json["QueueType"] = type && HeaderToString(*type) == "quorum" ? "Quorum" : "Classic";
    const auto* group = FindHeader(others, "x-quorum-initial-group-size");
    json["QuorumInitialGroupSize"] = group ? HeaderToInteger(*group) : 0;
    if (type && HeaderToString(*type) == "quorum") others.erase("x-queue-type");
    others.erase("x-quorum-initial-group-size");
    json["QueueArguments"] = contracts::OrderedJson::object();
    for (const auto& [name, value] : others)
        std::visit([&, &name = name](const auto& v) { json["QueueArguments"][name] = v; }, value);
    json["ConcurrentMessageLimit"] = settings.concurrent_message_limit;
    json["Serializer"] = settings.raw_json ? "RawJson" : "Envelope";
    json["RedeliveryLimit"] = settings.redelivery_limit;
    const KillSwitchSettings& kill_switch = settings.kill_switch;
    json["KillSwitch"]["Enabled"] = kill_switch.enabled;
    json["KillSwitch"]["ActivationThreshold"] = kill_switch.activation_threshold;
    json["KillSwitch"]["TripThreshold"] = kill_switch.trip_threshold;
    json["KillSwitch"]["TrackingPeriodSeconds"] =
        std::chrono::duration_cast<std::chrono::seconds>(kill_switch.tracking_period).count();
    json["KillSwitch"]["RestartTimeoutSeconds"] =
        std::chrono::duration_cast<std::chrono::seconds>(kill_switch.restart_timeout).count();
    return json;
}

namespace {

// "QueueArguments": {"x-max-length": 10000, "x-overflow": "reject-publish", ...}: strings, integers
// and booleans, declared on the queue as given.
HeaderTable QueueArgumentsFromJson(const Json& json) {
    HeaderTable arguments;
    if (json.is_null()) return arguments;
    if (!json.is_object()) throw SettingsError("setting 'Endpoint.QueueArguments' must be an object");
    for (auto it = json.begin(); it != json.end(); ++it) {
        const Json& value = it.value();
        if (!contracts::StartsWithIgnoreCase(it.key(), "x-"))
            throw SettingsError("setting 'Endpoint.QueueArguments." + it.key() + "': queue arguments start with 'x-'");
        if (value.is_string())
            arguments[it.key()] = value.get<std::string>();
        else if (value.is_boolean())
            arguments[it.key()] = value.get<bool>();
        else if (value.is_number_integer() && value.get<std::int64_t>() >= INT32_MIN &&
                 value.get<std::int64_t>() <= INT32_MAX)
            arguments[it.key()] = static_cast<std::int32_t>(value.get<std::int64_t>());
        else if (value.is_number_integer())
            arguments[it.key()] = value.get<std::int64_t>();
        else
            throw SettingsError("setting 'Endpoint.QueueArguments." + it.key() +
                                "' must be a string, an integer or a boolean");
    }
    return arguments;
}

}  // namespace

ReceiveEndpointSettings EndpointSettingsFromJson(const Json& json) {
    ReceiveEndpointSettings settings;
    settings.queue = SettingString(json, "Queue");
    if (!contracts::IsValidEntityName(settings.queue))
        throw SettingsError("setting 'Endpoint.Queue' must hold only letters, digits, '-', '_', '.', ':'");
    settings.prefetch = static_cast<std::uint16_t>(SettingInt(json, "PrefetchCount", 1, 65535));
    try {
        settings.retry = RetryPolicy::FromJson(json.at("Retry"));
    } catch (const std::invalid_argument& e) {
        throw SettingsError(std::string("setting 'Endpoint.") + e.what());
    }
    settings.queue_arguments = QueueArgumentsFromJson(json.value("QueueArguments", Json()));
    const std::string queue_type = json.contains("QueueType") ? SettingString(json, "QueueType") : "Classic";
    const int group_size =
        json.contains("QuorumInitialGroupSize") ? SettingInt(json, "QuorumInitialGroupSize", 0, 1000) : 0;
    if (EqualsIgnoreCase(queue_type, "Quorum")) {
        SetQuorumQueue(settings.queue_arguments, group_size);
    } else if (!EqualsIgnoreCase(queue_type, "Classic")) {
        throw SettingsError("setting 'Endpoint.QueueType' must be \"Classic\" or \"Quorum\"");
    } else if (group_size > 0) {
        throw SettingsError("setting 'Endpoint.QuorumInitialGroupSize' needs 'Endpoint.QueueType' \"Quorum\"");
    }
    if (json.contains("ConcurrentMessageLimit"))
        settings.concurrent_message_limit = SettingInt(json, "ConcurrentMessageLimit", 0, 65535);
    if (json.contains("Serializer")) {
        const std::string serializer = SettingString(json, "Serializer");
        if (!EqualsIgnoreCase(serializer, "RawJson") && !EqualsIgnoreCase(serializer, "Envelope"))
            throw SettingsError("setting 'Endpoint.Serializer' must be \"Envelope\" or \"RawJson\"");
        settings.raw_json = EqualsIgnoreCase(serializer, "RawJson");
    }
    if (json.contains("RedeliveryLimit")) settings.redelivery_limit = SettingInt(json, "RedeliveryLimit", 0, 1000000);
    if (json.contains("KillSwitch")) {
        // MassTransit's limits: a threshold of at least one message, 0-100 percent, periods of at least a second.
        const Json& kill_switch = json.at("KillSwitch");
        settings.kill_switch.enabled = kill_switch.value("Enabled", false);
        settings.kill_switch.activation_threshold = SettingInt(kill_switch, "ActivationThreshold", 1, INT_MAX);
        settings.kill_switch.trip_threshold = SettingInt(kill_switch, "TripThreshold", 0, 100);
        settings.kill_switch.tracking_period =
            std::chrono::seconds(SettingInt(kill_switch, "TrackingPeriodSeconds", 1, 86400));
        settings.kill_switch.restart_timeout =
            std::chrono::seconds(SettingInt(kill_switch, "RestartTimeoutSeconds", 1, 86400));
    }
    return settings;
}

std::string ConsumerJournalPath(const DatabaseSettings& database) {
    if (database.path.empty() || database.path == ":memory:" || database.path.starts_with("file:")) return "";
    return database.path + "-consumer";
}

contracts::OrderedJson DatabaseSettings::ToJson() const {
    contracts::OrderedJson json;
    json["Path"] = path;
    json["Synchronous"] = synchronous == SqliteSync::kFull ? "Full" : "Normal";
    json["GroupCommit"] = group_commit;
    return json;
}

DatabaseSettings DatabaseSettings::FromJson(const Json& json) {
    DatabaseSettings settings;
    settings.path = SettingString(json, "Path");
    if (settings.path.empty()) throw SettingsError("setting 'Database.Path' must not be empty");
    const std::string sync = SettingString(json, "Synchronous");
    if (EqualsIgnoreCase(sync, "Full"))
        settings.synchronous = SqliteSync::kFull;
    else if (EqualsIgnoreCase(sync, "Normal"))
        settings.synchronous = SqliteSync::kNormal;
    else
        throw SettingsError("setting 'Database.Synchronous' must be \"Normal\" or \"Full\"");
    if (json.contains("GroupCommit")) settings.group_commit = json["GroupCommit"].get<bool>();
    return settings;
}

namespace {
// %* in the log pattern: " name=value" for each field of the current LogScope (the trace id and
// the order id of the message or request in hand).
class LogFieldsFlag : public spdlog::custom_flag_formatter {
  public:
    void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& out) override {
        std::string fields;
        AppendCurrentLogFields(fields);
        out.append(fields.data(), fields.data() + fields.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<LogFieldsFlag>(); }
};
}  // namespace

std::unique_ptr<spdlog::formatter> LogFormatter(const std::string& service_name) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<LogFieldsFlag>('*').set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%-5l%$ " + service_name + "%* %v");
    return formatter;
}

namespace {
// A JSON log line's name for a LogScope field.
const char* JsonFieldName(const char* field) {
    if (std::string_view(field) == kTraceLogField) return "traceId";
    if (std::string_view(field) == kMessageLogField) return "messageId";
    if (std::string_view(field) == contracts::kOrderLogField) return "orderId";
    return field;
}

class JsonLineFormatter : public spdlog::formatter {
  public:
    explicit JsonLineFormatter(std::string service_name) : service_name_(std::move(service_name)) {}

    void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
        contracts::OrderedJson line;
        line["time"] = contracts::FormatIso8601(std::chrono::time_point_cast<contracts::Timestamp::duration>(msg.time));
        const auto level = spdlog::level::to_string_view(msg.level);
        line["level"] = std::string(level.data(), level.size());
        line["service"] = service_name_;
        if (const LogFields* fields = CurrentLogFields())
            for (const auto& [name, value] : fields->fields()) line[JsonFieldName(name)] = value;
        line["message"] = std::string(msg.payload.data(), msg.payload.size());
        // Text that is not UTF-8 (a peer's bytes quoted in a message) is replaced, never a throw.
        const std::string text = line.dump(-1, ' ', false, contracts::OrderedJson::error_handler_t::replace);
        dest.append(text.data(), text.data() + text.size());
        dest.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonLineFormatter>(service_name_);
    }

  private:
    std::string service_name_;
};
}  // namespace

std::unique_ptr<spdlog::formatter> JsonLogFormatter(const std::string& service_name) {
    return std::make_unique<JsonLineFormatter>(service_name);
}

void ConfigureLogging(const std::string& service_name, const std::string& level, LogFormat format) {
    spdlog::set_formatter(format == LogFormat::kJson ? JsonLogFormatter(service_name) : LogFormatter(service_name));
    const auto parsed = spdlog::level::from_str(level);
    if (parsed == spdlog::level::off && level != "off")
        throw SettingsError("setting 'Logging.Level' must be one of trace, debug, info, warning, error, critical, off");
    spdlog::set_level(parsed);
}

ServiceSettings::ServiceSettings(std::string queue, std::string database_path)
    : endpoint{.queue = std::move(queue),
               .prefetch = 16,
               .retry = RetryPolicy::Interval(3, std::chrono::milliseconds(500)),
               .kill_switch = {.enabled = true}},
      database{std::move(database_path), SqliteSync::kNormal} {}

void ServiceSettings::WriteCommonSections(contracts::OrderedJson& json) const {
    json["RabbitMQ"] = RabbitMqSettingsToJson(rabbitmq);
    json["Endpoint"] = EndpointSettingsToJson(endpoint);
    json["Database"] = database.ToJson();
    json["Tracing"]["Propagate"] = propagate_trace;
    json["Metrics"]["Enabled"] = metrics_enabled;
    json["Logging"]["Level"] = log_level;
    json["Logging"]["Format"] = log_format == LogFormat::kJson ? "Json" : "Text";
}

void ServiceSettings::ReadCommonSections(const Json& json) {
    rabbitmq = RabbitMqSettingsFromJson(json.at("RabbitMQ"));
    endpoint = EndpointSettingsFromJson(json.at("Endpoint"));
    database = DatabaseSettings::FromJson(json.at("Database"));
    propagate_trace = json.at("Tracing").at("Propagate").get<bool>();
    metrics_enabled = json.at("Metrics").at("Enabled").get<bool>();
    log_level = SettingString(json.at("Logging"), "Level");
    const std::string format = SettingString(json.at("Logging"), "Format");
    if (EqualsIgnoreCase(format, "Text"))
        log_format = LogFormat::kText;
    else if (EqualsIgnoreCase(format, "Json"))
        log_format = LogFormat::kJson;
    else
        throw SettingsError("setting 'Logging.Format' must be \"Text\" or \"Json\"");
}

contracts::OrderedJson AdminSettings::ToJson() const {
    contracts::OrderedJson json;
    json["Enabled"] = enabled;
    json["Host"] = host;
    json["Port"] = port;
    return json;
}

AdminSettings AdminSettings::FromJson(const Json& json) {
    AdminSettings settings;
    settings.enabled = json.at("Enabled").get<bool>();
    settings.host = SettingString(json, "Host");
    settings.port = SettingInt(json, "Port", 0, 65535);
    if (settings.host.empty()) throw SettingsError("setting 'Admin.Host' must not be empty");
    return settings;
}

BusSettings ServiceSettings::BusSettingsFor(std::string service_name, metrics::MetricsRegistry* metrics) const {
    return {.service_name = std::move(service_name),
            .consumer_journal_path = ConsumerJournalPath(database),
            .propagate_trace = propagate_trace,
            .metrics = metrics_enabled ? metrics : nullptr};
}

}  // namespace messaging
