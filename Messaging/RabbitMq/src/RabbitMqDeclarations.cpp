// Topology: declaring queues, exchanges and bindings now and after every reconnect.
#include "RabbitMq/RabbitMqTransport.h"

#include <algorithm>

#include "RabbitMq/FieldTable.h"
#include "RabbitMqChannels.h"

namespace messaging {

void RabbitMqTransport::SendDeclarations(DeclaredTopology& entry) {
    const Topology& topology = entry.topology;
    // MassTransit's order: queues, exchanges, queue bindings, exchange bindings.
    for (const auto& queue : topology.queues) {
        EncodedTable arguments(queue.arguments);
        amqp_queue_declare_t declare{};
        declare.queue = AmqpBytes(queue.name);
        declare.durable = queue.durable;
        declare.exclusive = queue.exclusive;
        declare.auto_delete = queue.auto_delete;
        declare.arguments = arguments.get();
        SendRpc(kPublishChannel, AMQP_QUEUE_DECLARE_METHOD, &declare, AMQP_QUEUE_DECLARE_OK_METHOD,
                "declaring queue '" + queue.name + "' with arguments " + DescribeTable(queue.arguments));
        if (topology.on_demand) pending_replies_[kPublishChannel].back().on_demand_queue = queue.name;
    }
    for (const auto& exchange : topology.exchanges) {
        amqp_exchange_declare_t declare{};
        declare.exchange = AmqpBytes(exchange.name);
        declare.type = AmqpBytes(exchange.type);
        declare.durable = exchange.durable;
        declare.auto_delete = exchange.auto_delete;
        SendRpc(kPublishChannel, AMQP_EXCHANGE_DECLARE_METHOD, &declare, AMQP_EXCHANGE_DECLARE_OK_METHOD,
                "exchange.declare " + exchange.name);
        if (topology.borrowed) pending_replies_[kPublishChannel].back().borrowed_exchange = exchange.name;
        if (topology.on_demand && !topology.queues.empty())
            pending_replies_[kPublishChannel].back().on_demand_queue = topology.queues.front().name;
    }
    for (const auto& binding : topology.queue_bindings) {
        amqp_queue_bind_t bind{};
        bind.queue = AmqpBytes(binding.queue);
        bind.exchange = AmqpBytes(binding.exchange);
        bind.routing_key = amqp_empty_bytes;
        SendRpc(kPublishChannel, AMQP_QUEUE_BIND_METHOD, &bind, AMQP_QUEUE_BIND_OK_METHOD,
                "queue.bind " + binding.exchange + " -> " + binding.queue);
    }
    for (const auto& binding : topology.exchange_bindings) {
        amqp_exchange_bind_t bind{};
        bind.destination = AmqpBytes(binding.destination);
        bind.source = AmqpBytes(binding.source);
        bind.routing_key = amqp_empty_bytes;
        SendRpc(kPublishChannel, AMQP_EXCHANGE_BIND_METHOD, &bind, AMQP_EXCHANGE_BIND_OK_METHOD,
                "exchange.bind " + binding.source + " -> " + binding.destination);
    }
    if (!entry.declared) return;
    auto& replies = pending_replies_[kPublishChannel];
    if (replies.empty())
        loop_.Post([declared = std::move(entry.declared)] { declared(Status::Ok()); });
    else
        replies.back().outcome = std::move(entry.declared);
    entry.declared = nullptr;
}

bool RabbitMqTransport::IsSettled() const {
    if (!IsConnected()) return false;
    for (const auto& [channel, replies] : pending_replies_)
        if (channel != kQueueCheckChannel && !replies.empty()) return false;
    for (const auto& [id, consumer] : consumers_)
        if (consumer.tag.empty()) return false;
    return true;
}

void RabbitMqTransport::Declare(const Topology& topology, Completion declared) {
    // Declaring a refused on-demand queue again is a new try: the broker's answer decides anew.
    if (topology.on_demand && !topology.queues.empty()) on_demand_refusals_.Forget(topology.queues.front().name);
    // Declaring the same again (a queue deleted at runtime) sends it again but keeps one copy for
    // reconnects, so repeated re-declarations do not pile up.
    auto kept = std::find_if(topology_.begin(), topology_.end(),
                             [&](const DeclaredTopology& entry) { return entry.topology == topology; });
    if (kept == topology_.end()) {
        topology_.push_back(DeclaredTopology{topology, {}});
        kept = std::prev(topology_.end());
    }
    if (declared) {
        // An earlier caller still waiting hears the same outcome.
        if (kept->declared)
            declared = [first = std::move(kept->declared), then = std::move(declared)](const Status& status) {
                first(status);
                then(status);
            };
        kept->declared = std::move(declared);
    }
    if (IsConnected()) SendDeclarations(*kept);
}

}  // namespace messaging
