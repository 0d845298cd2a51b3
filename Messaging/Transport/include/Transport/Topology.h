// Broker topology as data: exchanges, queues and the bindings between them, declared the way
// MassTransit declares them (durable fanout exchanges, durable queues with the endpoint's queue
// arguments). The in-memory transport and the RabbitMQ transport both take a Topology and make it real.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "Contracts/MessageNames.h"

namespace messaging {

// The AMQP field-table values we read and write: long strings, signed 32/64-bit ints, booleans.
// Message headers and queue arguments are both tables of these.
using HeaderValue = std::variant<std::string, std::int32_t, std::int64_t, bool>;
using HeaderTable = std::map<std::string, HeaderValue>;

// Renders a table for logs and errors: {x-queue-type: quorum, x-quorum-initial-group-size: 3}.
std::string DescribeTable(const HeaderTable& table);

struct ExchangeSpec {
    std::string name;
    std::string type = "fanout";
    bool durable = true;
    bool auto_delete = false;
    bool operator==(const ExchangeSpec&) const = default;
};

struct QueueSpec {
    std::string name;
    bool durable = true;
    bool exclusive = false;
    bool auto_delete = false;
    HeaderTable arguments{};  // x-queue-type, x-quorum-initial-group-size, ...
    bool operator==(const QueueSpec&) const = default;
};

struct QueueBinding {  // exchange -> queue
    std::string exchange;
    std::string queue;
    bool operator==(const QueueBinding&) const = default;
};

struct ExchangeBinding {  // exchange -> exchange
    std::string source;
    std::string destination;
    bool operator==(const ExchangeBinding&) const = default;
};

struct Topology {
    std::vector<ExchangeSpec> exchanges;
    std::vector<QueueSpec> queues;
    std::vector<QueueBinding> queue_bindings;
    std::vector<ExchangeBinding> exchange_bindings;
    // Another party's entities, such as the exchange of an address we answer to: declared as
    // MassTransit declares a send endpoint's, but when what exists differs, the existing entity serves
    // and the declaration is dropped, instead of the service stopping as for its own topology.
    bool borrowed = false;
    // Declared when a message first needs it (an endpoint's `_error` or `_skipped` queue): when the
    // broker refuses it because what exists differs, only the messages that need it wait (their
    // publishes fail with kPreconditionFailed); the service keeps running and does not stop
    // reconnecting, as it does for its own endpoint's queue.
    bool on_demand = false;

    void AddExchange(const std::string& name);
    void AddQueue(const std::string& name, const HeaderTable& arguments = {});
    void BindQueue(const std::string& exchange, const std::string& queue);
    void BindExchange(const std::string& source, const std::string& destination);
    void Merge(const Topology& other);  // duplicates are dropped
    bool Empty() const { return exchanges.empty() && queues.empty(); }
    bool operator==(const Topology&) const = default;
};

// A queue plus the same-named fanout exchange bound to it (endpoint, `_error`, `_skipped`). The
// `_error` and `_skipped` queues get their endpoint's queue arguments, as MassTransit copies them.
// `temporary`: both are neither durable nor kept once unused (auto-delete), as MassTransit declares
// a temporary endpoint's.
Topology QueueWithExchange(const std::string& name, const HeaderTable& queue_arguments = {}, bool temporary = false);

// The exchange of a published type, plus the exchanges of the types it implements, each bound to it.
Topology PublishTopology(const contracts::MessageTypeName& type,
                         const std::vector<contracts::MessageTypeName>& implemented_types);

// A receive endpoint: queue + exchange, and each consumed type's exchange bound exchange-to-exchange
// to the endpoint exchange. `_error` and `_skipped` are not part of it: the bus declares them on the
// first move, as MassTransit does.
Topology ReceiveEndpointTopology(const std::string& queue, const std::vector<contracts::MessageTypeName>& consumed,
                                 const HeaderTable& queue_arguments = {});

inline std::string ErrorQueueName(const std::string& queue) {
    return queue + "_error";
}
inline std::string SkippedQueueName(const std::string& queue) {
    return queue + "_skipped";
}

}  // namespace messaging
