// Where and how the RabbitMQ transport connects: broker address, virtual host, credentials and the
// heartbeat and connection timeouts, and how often it asks whether its queues are served. Hosting fills
// it from appsettings and the environment.
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
    // How often each consumed queue is checked with a passive declaration (0: never). A quorum queue
    // whose member is down keeps the consumer yet delivers nothing; only this check tells.
    int queue_check_interval_ms = 5000;
};

}  // namespace messaging
