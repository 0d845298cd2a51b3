// The seam between the bus and a broker: publish with confirmation, consume with explicit
// acknowledgement, declare topology. InMemoryTransport and RabbitMqTransport implement it; every
// method is called, and every callback runs, on the owning event loop's thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "Runtime/Status.h"
#include "Transport/Topology.h"

namespace messaging {

using Completion = std::function<void(const Status&)>;

std::string HeaderToString(const HeaderValue& value);
// The header as an integer: an int32 or int64 value, or a string of digits; 0 for anything else.
std::int64_t HeaderToInteger(const HeaderValue& value);
const HeaderValue* FindHeader(const HeaderTable& headers, const std::string& name);  // case-insensitive

struct MessageProperties {
    std::string content_type;
    std::string message_id;
    std::string correlation_id;
    std::uint8_t delivery_mode = 2;
    std::string expiration;
    std::string reply_to;  // a direct reply-to request's "amq.rabbitmq.reply-to.<...>" queue
    std::optional<std::uint8_t> priority;
    HeaderTable headers;
};

struct TransportMessage {
    std::string body;
    MessageProperties properties;
    std::string routing_key;
    // Publish only: the broker must route it to at least one queue. One it cannot route is returned,
    // and the publish completes with NotFound instead of OK.
    bool mandatory = false;
};

// A message handed to a consumer; settle it exactly once with Ack or Nack.
struct Delivery {
    TransportMessage message;
    std::string queue;
    std::string exchange;
    std::uint64_t delivery_tag = 0;
    std::uint64_t connection_generation = 0;  // deliveries of a dropped connection cannot be settled
    bool redelivered = false;
};

using DeliveryHandler = std::function<void(Delivery)>;
using ConsumerId = std::uint64_t;

class Transport {
  public:
    virtual ~Transport() = default;

    // Declares the topology now (or once connected) and again after every reconnect. `declared` runs
    // once: OK when the broker has accepted all of it, or why it refused (a refusal also ends the
    // connection). Publishes made after this call are routed with the topology in place.
    virtual void Declare(const Topology& topology, Completion declared = {}) = 0;
    // `confirmed` runs once: OK when the broker has taken responsibility for the message; NotFound when
    // a mandatory message reached no queue (or its exchange does not exist).
    virtual void Publish(const std::string& exchange, TransportMessage message, Completion confirmed) = 0;
    // Deliveries to `queue` go to `handler`, at most `prefetch` unsettled at a time. Survives reconnects.
    virtual ConsumerId Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) = 0;
    virtual void Cancel(ConsumerId consumer) = 0;
    // True while the broker is delivering to `consumer` (consume-ok received, connection open, and
    // ConsumerProblem empty).
    virtual bool IsConsuming(ConsumerId consumer) const = 0;
    // Why the broker delivers nothing to `consumer` although it took it: its queue has no leader (a
    // quorum queue whose member is down) or no longer counts the consumer. Empty while it is served.
    virtual std::string ConsumerProblem(ConsumerId /*consumer*/) const { return {}; }
    virtual void Ack(const Delivery& delivery) = 0;
    virtual void Nack(const Delivery& delivery, bool requeue) = 0;
    // Hands the acks buffered so far to the socket now rather than at the end of the loop turn.
    virtual void SendPendingAcks() {}

    virtual bool IsConnected() const = 0;
    // True for a bus inside this process (no broker at all): health says so instead of "connected".
    virtual bool IsInProcess() const { return false; }
    // True while the broker refuses to take publishes (a memory or disk alarm): they wait, buffered.
    virtual bool IsPublishingBlocked() const { return false; }
    // How long, in all, the broker has blocked publishing on this transport's connections, the
    // block in force included.
    virtual std::chrono::steady_clock::duration PublishingBlockedTime() const { return {}; }
    // Not OK once the broker refused a declaration because what exists differs (a queue with other
    // arguments, an exchange of another type): reconnecting cannot fix that, so the transport stays
    // down and says why until an operator reconciles the topology and restarts the service.
    virtual Status TopologyRefusal() const { return Status::Ok(); }
    // The on-demand queues (Topology::on_demand) the broker refused, each with the broker's reason.
    virtual std::vector<std::pair<std::string, std::string>> RefusedOnDemandQueues() const { return {}; }
    // The scheme and authority used in envelope addresses, e.g. "rabbitmq://localhost/".
    virtual std::string BaseAddress() const = 0;
};

}  // namespace messaging
