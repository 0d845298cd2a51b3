// Where and how the RabbitMQ transport connects: broker address, virtual host, credentials and the
// heartbeat and connection timeouts. Hosting fills it from appsettings and the environment.
#pragma once

#include <string>

namespace messaging {

struct RabbitMqSettings {
    std::string host = "localhost";
    int port = 5672;
    std::string virtual_host = "/";
    std::string username;  // no credential is compiled in: set it in appsettings or RabbitMQ__Username
    std::string password;
    int heartbeat_seconds = 10;
    int connection_timeout_seconds = 10;
};

}  // namespace messaging
