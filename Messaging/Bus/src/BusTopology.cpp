// Topology: the exchanges behind addresses, what each message type and queue declares, and
// declarations nobody waits for.
#include "Bus/Bus.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>

#include "BusInternals.h"

namespace messaging {

std::string ExchangeOfAddress(const std::string& address) {
    std::string path = address.substr(0, address.find('?'));
    return path.substr(path.rfind('/') + 1);
}

ExchangeSpec SendExchangeOfAddress(const std::string& address) {
    ExchangeSpec spec{.name = ExchangeOfAddress(address)};
    const auto question = address.find('?');
    if (question == std::string::npos) return spec;
    std::string_view query = std::string_view(address).substr(question + 1);
    auto as_bool = [](std::string_view value) -> std::optional<bool> {
        if (contracts::EqualsIgnoreCase(value, "true")) return true;
        if (contracts::EqualsIgnoreCase(value, "false")) return false;
        return std::nullopt;
    };
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const auto equals = pair.find('=');
        if (equals == std::string_view::npos) continue;
        const std::string_view key = pair.substr(0, equals);
        const std::string_view value = pair.substr(equals + 1);
        if (key == "temporary") {
            if (auto temporary = as_bool(value)) {
                spec.auto_delete = *temporary;
                spec.durable = !*temporary;
            }
        } else if (key == "durable") {
            if (auto durable = as_bool(value)) spec.durable = *durable;
        } else if (key == "autodelete") {
            if (auto auto_delete = as_bool(value)) spec.auto_delete = *auto_delete;
        } else if (key == "type" && !value.empty()) {
            spec.type = value;
        }
    }
    return spec;
}

bool IsReplyToAddress(const std::string& address) {
    return ExchangeOfAddress(address) == kReplyToQueue;
}

Completion LogRefusal(std::string what) {
    return [what = std::move(what)](const Status& status) {
        if (!status.ok()) spdlog::error("declaring {} failed: {}", what, status.message());
    };
}

void Bus::DeclareTopologyFor(const contracts::MessageTypeName& type,
                             const std::vector<contracts::MessageTypeName>& implemented) {
    const std::string name = type.EntityName();
    if (std::find(declared_types_.begin(), declared_types_.end(), name) != declared_types_.end()) return;
    declared_types_.push_back(name);
    transport_.Declare(PublishTopology(type, implemented), LogRefusal("the exchange of " + name));
}

void SetQuorumQueue(HeaderTable& arguments, int initial_group_size) {
    arguments["x-queue-type"] = std::string("quorum");
    arguments.erase("x-max-priority");
    if (initial_group_size > 0)
        arguments["x-quorum-initial-group-size"] = static_cast<std::int32_t>(initial_group_size);
}

void Bus::DeclareSendExchangeOnce(const std::string& address) {
    ExchangeSpec spec = SendExchangeOfAddress(address);
    // The default exchange and the broker's own amq.* exchanges exist and cannot be declared.
    if (spec.name.empty() || spec.name.starts_with("amq.")) return;
    if (!declared_send_exchanges_.insert(spec.name).second) return;
    Topology topology;
    topology.exchanges.push_back(std::move(spec));
    topology.borrowed = true;
    transport_.Declare(topology, LogRefusal("the exchange of " + address));
}

void Bus::DeclareQueueOnce(const std::string& queue, const HeaderTable& arguments, bool temporary) {
    if (std::find(declared_queues_.begin(), declared_queues_.end(), queue) != declared_queues_.end()) return;
    declared_queues_.push_back(queue);
    Topology topology = QueueWithExchange(queue, arguments, temporary);
    topology.on_demand = true;  // a refusal holds back only the messages moved there
    transport_.Declare(topology, LogRefusal("the queue " + queue));
}

}  // namespace messaging
