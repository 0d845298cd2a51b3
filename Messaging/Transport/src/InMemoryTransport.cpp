#include "Transport/InMemoryTransport.h"

#include <algorithm>

namespace messaging {

void InMemoryTransport::Declare(const Topology& topology, Completion declared) {
    const Status status = DeclareNow(topology);
    if (declared) declared(status);
}

Status InMemoryTransport::DeclareNow(const Topology& topology) {
    for (const auto& spec : topology.exchanges) {
        auto [it, inserted] = exchanges_.try_emplace(spec.name, Exchange{spec, {}, {}});
        if (!inserted && !(it->second.spec == spec))
            return Status(StatusCode::kPreconditionFailed,
                          "PRECONDITION_FAILED - inequivalent arg for exchange '" + spec.name + "'");
    }
    for (const auto& spec : topology.queues) {
        auto [it, inserted] = queues_.try_emplace(spec.name);
        if (inserted) it->second.spec = spec;
        if (!inserted && !(it->second.spec == spec))
            return Status(StatusCode::kPreconditionFailed,
                          "PRECONDITION_FAILED - inequivalent arg for queue '" + spec.name + "'");
    }
    for (const auto& binding : topology.queue_bindings) {
        auto exchange = exchanges_.find(binding.exchange);
        if (exchange == exchanges_.end() || !queues_.count(binding.queue))
            return Status::NotFound("NOT_FOUND - cannot bind " + binding.exchange + " to " + binding.queue);
        auto& destinations = exchange->second.queue_destinations;
        if (std::find(destinations.begin(), destinations.end(), binding.queue) == destinations.end())
            destinations.push_back(binding.queue);
    }
    for (const auto& binding : topology.exchange_bindings) {
        auto source = exchanges_.find(binding.source);
        if (source == exchanges_.end() || !exchanges_.count(binding.destination))
            return Status::NotFound("NOT_FOUND - cannot bind " + binding.source + " to " + binding.destination);
        auto& destinations = source->second.exchange_destinations;
        if (std::find(destinations.begin(), destinations.end(), binding.destination) == destinations.end())
            destinations.push_back(binding.destination);
    }
    return Status::Ok();
}

std::set<std::string> InMemoryTransport::RouteOf(const std::string& exchange) const {
    std::set<std::string> queues;
    std::set<std::string> visited;
    std::vector<std::string> pending{exchange};
    while (!pending.empty()) {
        std::string name = std::move(pending.back());
        pending.pop_back();
        if (!visited.insert(name).second) continue;
        auto it = exchanges_.find(name);
        if (it == exchanges_.end()) continue;
        queues.insert(it->second.queue_destinations.begin(), it->second.queue_destinations.end());
        for (const auto& destination : it->second.exchange_destinations) pending.push_back(destination);
    }
    return queues;
}

void InMemoryTransport::Publish(const std::string& exchange, TransportMessage message, Completion confirmed) {
    Status status;
    if (!available_) {
        status = Status::Unavailable("the in-memory broker is unavailable");
    } else if (auto reject = rejected_publishes_.find(exchange); reject != rejected_publishes_.end()) {
        // As a broker that could not take it (basic.nack): the message goes nowhere.
        status = Status::Internal("the broker rejected the message (basic.nack)");
        if (--reject->second == 0) rejected_publishes_.erase(reject);
    } else if (exchange.empty()) {
        // The default exchange: straight to the queue the routing key names, as direct reply-to uses it.
        if (queues_.count(message.routing_key)) {
            const std::string queue = message.routing_key;
            queues_[queue].ready.push_back(Stored{std::move(message), exchange, false});
            ScheduleDispatch(queue);
        } else if (message.mandatory) {
            status = Status::NotFound("the broker returned the message sent to queue '" + message.routing_key +
                                      "', which does not exist: 312 NO_ROUTE");
        }
    } else if (!exchanges_.count(exchange)) {
        status = Status::NotFound("NOT_FOUND - no exchange '" + exchange + "'");
    } else if (const auto route = RouteOf(exchange); route.empty() && message.mandatory) {
        status = Status::NotFound("the broker returned the message published to '" + exchange +
                                  "', which reached no queue: 312 NO_ROUTE");
    } else {
        // Like RabbitMQ, a message reaches each bound queue once, however many paths lead there.
        for (const auto& queue : route) {
            queues_[queue].ready.push_back(Stored{message, exchange, false});
            ScheduleDispatch(queue);
        }
    }
    if (confirmed)
        loop_.Post([alive = std::weak_ptr<bool>(alive_), confirmed = std::move(confirmed), status] {
            if (!alive.expired()) confirmed(status);
        });
}

ConsumerId InMemoryTransport::Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) {
    const ConsumerId id = next_consumer_id_++;
    consumers_[id] = Consumer{queue, prefetch, std::move(handler), 0};
    queues_[queue].consumers.push_back(id);
    ScheduleDispatch(queue);
    return id;
}

void InMemoryTransport::Cancel(ConsumerId consumer) {
    auto it = consumers_.find(consumer);
    if (it == consumers_.end()) return;
    auto& consumers = queues_[it->second.queue].consumers;
    consumers.erase(std::remove(consumers.begin(), consumers.end(), consumer), consumers.end());
    it->second.handler = nullptr;  // kept until its unacked deliveries are settled
}

bool InMemoryTransport::IsConsuming(ConsumerId consumer) const {
    auto it = consumers_.find(consumer);
    return available_ && it != consumers_.end() && it->second.handler != nullptr;
}

void InMemoryTransport::CancelConsumersOf(const std::string& queue) {
    const auto consumers = queues_[queue].consumers;
    for (ConsumerId consumer : consumers) Cancel(consumer);
}

void InMemoryTransport::DeleteQueue(const std::string& queue) {
    CancelConsumersOf(queue);
    queues_.erase(queue);
    for (auto& [name, exchange] : exchanges_) std::erase(exchange.queue_destinations, queue);
}

void InMemoryTransport::ScheduleDispatch(const std::string& queue) {
    auto& q = queues_[queue];
    if (q.dispatch_scheduled || q.consumers.empty()) return;
    q.dispatch_scheduled = true;
    loop_.Post([this, alive = std::weak_ptr<bool>(alive_), queue] {
        if (alive.expired()) return;
        queues_[queue].dispatch_scheduled = false;
        DispatchQueue(queue);
    });
}

void InMemoryTransport::DispatchQueue(const std::string& queue) {
    if (!available_) return;
    auto& q = queues_[queue];
    while (!q.ready.empty() && !q.consumers.empty()) {
        // Round-robin over consumers with room under their prefetch.
        Consumer* target = nullptr;
        ConsumerId target_id = 0;
        for (std::size_t i = 0; i < q.consumers.size(); ++i) {
            const ConsumerId id = q.consumers[(q.next_consumer + i) % q.consumers.size()];
            Consumer& consumer = consumers_[id];
            if (consumer.prefetch == 0 || consumer.unacked < consumer.prefetch) {
                target = &consumer;
                target_id = id;
                q.next_consumer = (q.next_consumer + i + 1) % q.consumers.size();
                break;
            }
        }
        if (!target) return;
        Stored stored = std::move(q.ready.front());
        q.ready.pop_front();
        Delivery delivery;
        delivery.message = stored.message;
        delivery.queue = queue;
        delivery.exchange = stored.exchange;
        delivery.delivery_tag = next_delivery_tag_++;
        delivery.connection_generation = 1;
        delivery.redelivered = stored.redelivered;
        q.unacked.emplace(delivery.delivery_tag, std::make_pair(target_id, std::move(stored)));
        ++target->unacked;
        auto handler = target->handler;
        handler(std::move(delivery));
    }
}

void InMemoryTransport::Settle(const Delivery& delivery, bool requeue, bool ack) {
    auto q = queues_.find(delivery.queue);
    if (q == queues_.end()) return;
    auto it = q->second.unacked.find(delivery.delivery_tag);
    if (it == q->second.unacked.end()) return;
    auto [consumer_id, stored] = std::move(it->second);
    q->second.unacked.erase(it);
    if (auto consumer = consumers_.find(consumer_id); consumer != consumers_.end()) {
        --consumer->second.unacked;
        if (!consumer->second.handler && consumer->second.unacked == 0) consumers_.erase(consumer);
    }
    if (!ack && requeue) {
        stored.redelivered = true;
        q->second.ready.push_front(std::move(stored));
    }
    ScheduleDispatch(delivery.queue);
}

void InMemoryTransport::Ack(const Delivery& delivery) {
    Settle(delivery, false, true);
}
void InMemoryTransport::Nack(const Delivery& delivery, bool requeue) {
    Settle(delivery, requeue, false);
}

void InMemoryTransport::SetAvailable(bool available) {
    available_ = available;
    if (available)
        for (auto& [name, queue] : queues_) ScheduleDispatch(name);
}

std::vector<TransportMessage> InMemoryTransport::ReadyMessages(const std::string& queue) const {
    std::vector<TransportMessage> messages;
    if (auto it = queues_.find(queue); it != queues_.end())
        for (const auto& stored : it->second.ready) messages.push_back(stored.message);
    return messages;
}

std::size_t InMemoryTransport::ReadyCount(const std::string& queue) const {
    auto it = queues_.find(queue);
    return it == queues_.end() ? 0 : it->second.ready.size();
}

std::size_t InMemoryTransport::UnackedCount(const std::string& queue) const {
    auto it = queues_.find(queue);
    return it == queues_.end() ? 0 : it->second.unacked.size();
}

}  // namespace messaging
