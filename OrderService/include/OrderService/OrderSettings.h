// OrderService's settings (appsettings/OrderService.json), with their defaults.
#pragma once

#include <string>

#include "Hosting/Settings.h"
#include "OrderService/OrderSaga.h"

namespace order_service {

struct HttpSettings {
    std::string host = "0.0.0.0";
    int port = 5000;  // 0 picks a free port (tests)
    int max_body_bytes = 64 * 1024;
    int request_timeout_ms = 10000;         // how long a request waits for the bus before answering 503
    int idle_timeout_seconds = 60;          // a keep-alive connection with no request is closed after this
    int receive_timeout_ms = 10000;         // a request must arrive whole within this of its first byte, or 408
    int max_connections = 10000;            // open connections in all; more are closed when accepted
    int max_connections_per_client = 1000;  // open connections from one client address
    // Where swagger-ui-dist's files are (scripts/install-deps.sh installs them here); /swagger serves
    // them with this API's document. Relative to the working directory; empty: no /swagger.
    std::string swagger_ui_dir = "OrderService/SwaggerUi/node_modules/swagger-ui-dist";
};

struct OrderSettings : messaging::ServiceSettings {
    HttpSettings http;
    SagaOptions saga;

    OrderSettings() : ServiceSettings("order-service", "order-service.db") {}
    contracts::OrderedJson ToJson() const;
    static OrderSettings FromJson(const contracts::Json& json);
    // Defaults, then the file (if any), then environment overrides.
    static OrderSettings Load(const std::string& path, const std::vector<std::string>& environment) {
        return messaging::LoadServiceSettings<OrderSettings>(path, environment);
    }
};

}  // namespace order_service
