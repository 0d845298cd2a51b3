#include "OrderService/OrderSettings.h"

namespace order_service {

contracts::OrderedJson OrderSettings::ToJson() const {
    contracts::OrderedJson json;
    WriteCommonSections(json);
    json["Http"]["Host"] = http.host;
    json["Http"]["Port"] = http.port;
    json["Http"]["MaxBodyBytes"] = http.max_body_bytes;
    json["Http"]["RequestTimeoutMs"] = http.request_timeout_ms;
    json["Http"]["IdleTimeoutSeconds"] = http.idle_timeout_seconds;
    json["Http"]["ReceiveTimeoutMs"] = http.receive_timeout_ms;
    json["Http"]["MaxConnections"] = http.max_connections;
    json["Http"]["MaxConnectionsPerClient"] = http.max_connections_per_client;
    json["Http"]["SwaggerUiDir"] = http.swagger_ui_dir;
    json["Saga"]["TimeoutMs"] = saga.timeout.count();
    json["Saga"]["CardToken"] = saga.card_token;
    return json;
}

OrderSettings OrderSettings::FromJson(const contracts::Json& json) {
    using messaging::SettingInt;
    using messaging::SettingString;
    OrderSettings settings;
    settings.ReadCommonSections(json);
    const auto& http = json.at("Http");
    settings.http.host = SettingString(http, "Host");
    settings.http.port = SettingInt(http, "Port", 0, 65535);
    settings.http.max_body_bytes = SettingInt(http, "MaxBodyBytes", 1024, 16 * 1024 * 1024);
    settings.http.request_timeout_ms = SettingInt(http, "RequestTimeoutMs", 100, 600000);
    settings.http.idle_timeout_seconds = SettingInt(http, "IdleTimeoutSeconds", 1, 3600);
    settings.http.receive_timeout_ms = SettingInt(http, "ReceiveTimeoutMs", 100, 600000);
    settings.http.max_connections = SettingInt(http, "MaxConnections", 1, 1000000);
    settings.http.max_connections_per_client = SettingInt(http, "MaxConnectionsPerClient", 1, 1000000);
    settings.http.swagger_ui_dir = SettingString(http, "SwaggerUiDir");
    settings.saga.timeout =
        std::chrono::milliseconds(SettingInt(json.at("Saga"), "TimeoutMs", 10, 7 * 24 * 3600 * 1000));
    settings.saga.card_token = SettingString(json.at("Saga"), "CardToken");
    return settings;
}

}  // namespace order_service
