// OrderService's settings (appsettings/OrderService.json), with their defaults.
#pragma once

#include <string>

#include "Messaging/Settings.h"
#include "OrderService/OrderSaga.h"

namespace order_service {

struct HttpSettings {
    std::string host = "0.0.0.0";
    int port = 5000;  // 0 picks a free port (tests)
    int max_body_bytes = 64 * 1024;
    int request_timeout_ms = 10000;  // how long a request waits for the bus before answering 503
    int idle_timeout_seconds = 60;   // a keep-alive connection with no request is closed after this
};

struct OrderSettings {
    messaging::RabbitMqSettings rabbitmq;
    HttpSettings http;
    messaging::DatabaseSettings database{"order-service.db", messaging::SqliteSync::kNormal};
    messaging::ReceiveEndpointSettings endpoint{"order-service", 16,
                                                messaging::RetryPolicy::Interval(3, std::chrono::milliseconds(500))};
    SagaOptions saga;
    std::string log_level = "info";

    contracts::OrderedJson ToJson() const;
    static OrderSettings FromJson(const contracts::Json& json);
    static OrderSettings Load(const std::string& path, const std::vector<std::string>& environment);
};

}  // namespace order_service
