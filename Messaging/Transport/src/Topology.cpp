#include "Transport/Topology.h"

#include "Transport/Transport.h"

#include <algorithm>

namespace messaging {
namespace {

template <class T>
void AddUnique(std::vector<T>& items, T item) {
    if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(std::move(item));
}

}  // namespace

std::string DescribeTable(const HeaderTable& table) {
    std::string out = "{";
    for (const auto& [name, value] : table) {
        if (out.size() > 1) out += ", ";
        out += name + ": " + HeaderToString(value);
    }
    return out + "}";
}

void Topology::AddExchange(const std::string& name) {
    AddUnique(exchanges, ExchangeSpec{name});
}
void Topology::AddQueue(const std::string& name, const HeaderTable& arguments) {
    AddUnique(queues, QueueSpec{.name = name, .arguments = arguments});
}
void Topology::BindQueue(const std::string& exchange, const std::string& queue) {
    AddUnique(queue_bindings, QueueBinding{exchange, queue});
}
void Topology::BindExchange(const std::string& source, const std::string& destination) {
    AddUnique(exchange_bindings, ExchangeBinding{source, destination});
}

void Topology::Merge(const Topology& other) {
    for (const auto& e : other.exchanges) AddUnique(exchanges, e);
    for (const auto& q : other.queues) AddUnique(queues, q);
    for (const auto& b : other.queue_bindings) AddUnique(queue_bindings, b);
    for (const auto& b : other.exchange_bindings) AddUnique(exchange_bindings, b);
}

Topology QueueWithExchange(const std::string& name, const HeaderTable& queue_arguments, bool temporary) {
    Topology topology;
    topology.queues.push_back(
        QueueSpec{.name = name, .durable = !temporary, .auto_delete = temporary, .arguments = queue_arguments});
    topology.exchanges.push_back(ExchangeSpec{.name = name, .durable = !temporary, .auto_delete = temporary});
    topology.BindQueue(name, name);
    return topology;
}

Topology PublishTopology(const contracts::MessageTypeName& type,
                         const std::vector<contracts::MessageTypeName>& implemented_types) {
    Topology topology;
    const std::string exchange = type.EntityName();
    topology.AddExchange(exchange);
    for (const auto& implemented : implemented_types) {
        topology.AddExchange(implemented.EntityName());
        topology.BindExchange(exchange, implemented.EntityName());
    }
    return topology;
}

Topology ReceiveEndpointTopology(const std::string& queue, const std::vector<contracts::MessageTypeName>& consumed,
                                 const HeaderTable& queue_arguments) {
    Topology topology = QueueWithExchange(queue, queue_arguments);
    for (const auto& type : consumed) {
        topology.AddExchange(type.EntityName());
        topology.BindExchange(type.EntityName(), queue);
    }
    return topology;
}

}  // namespace messaging
