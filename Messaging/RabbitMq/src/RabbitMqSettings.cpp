// Reading broker node addresses ("host" or "host:port") and the list of nodes a transport connects to.
#include "RabbitMq/RabbitMqSettings.h"

#include <algorithm>
#include <cctype>

namespace messaging {

std::optional<BrokerNode> ParseBrokerNode(const std::string& address, int default_port) {
    const auto colon = address.find(':');
    BrokerNode node{address.substr(0, colon), default_port};
    if (node.host.empty()) return std::nullopt;
    if (colon == std::string::npos) return node;
    const std::string port = address.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        !std::all_of(port.begin(), port.end(), [](unsigned char c) { return std::isdigit(c); }))
        return std::nullopt;
    node.port = std::stoi(port);
    if (node.port < 1 || node.port > 65535) return std::nullopt;
    return node;
}

std::vector<BrokerNode> RabbitMqSettings::Nodes() const {
    std::vector<BrokerNode> nodes;
    for (const auto& address : hosts)
        if (auto node = ParseBrokerNode(address, port)) nodes.push_back(std::move(*node));
    if (nodes.empty()) nodes.push_back({host, port});
    return nodes;
}

}  // namespace messaging
