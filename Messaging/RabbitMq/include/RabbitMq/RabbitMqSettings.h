// Where and how the RabbitMQ transport connects: broker address (one node, or the nodes of a cluster),
// virtual host, credentials and the heartbeat and connection timeouts, and how often it asks whether its
// queues are served. Hosting fills it from appsettings and the environment.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace messaging {

// One node of the broker: a host name or address and its AMQP port.
struct BrokerNode {
    std::string host;
    int port = 5672;
    std::string ToString() const { return host + ":" + std::to_string(port); }
};

// "host" or "host:port" (the port from `default_port` when absent), as MassTransit's UseCluster takes
// its nodes; nullopt for an empty host or a port that is not 1-65535.
std::optional<BrokerNode> ParseBrokerNode(const std::string& address, int default_port);

struct RabbitMqSettings {
    std::string host = "localhost";  // names the bus in addresses; connected to when `hosts` is empty
    int port = 5672;
    // The nodes of a cluster, "host" or "host:port" each. Every connection attempt goes to the node
    // after the one tried last, in this order, as MassTransit's UseCluster does, so a dead node costs one
    // attempt. Empty: `host`:`port` only.
    std::vector<std::string> hosts;
    std::string virtual_host = "/";
    std::string username;  // no credential is compiled in: set it in appsettings or RabbitMQ__Username
    std::string password;
    int heartbeat_seconds = 10;
    int connection_timeout_seconds = 10;
    // How often each consumed queue is checked with a passive declaration (0: never). A quorum queue
    // whose member is down keeps the consumer yet delivers nothing; only this check tells.
    int queue_check_interval_ms = 5000;

    // The nodes connected to, in order: `hosts` parsed (an entry that does not parse is left out; the
    // settings loader refuses those first), else `host`:`port`.
    std::vector<BrokerNode> Nodes() const;
};

}  // namespace messaging
