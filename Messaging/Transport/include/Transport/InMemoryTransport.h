// An in-process broker that behaves like RabbitMQ for our purposes: fanout exchanges with
// exchange-to-exchange bindings, durable queues, prefetch, ack/nack with requeue, confirms and
// deliveries that arrive asynchronously through the event loop. Queues nobody consumes (`_error`,
// `_skipped`) keep their messages for inspection. SetAvailable(false) simulates a broker outage.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "Runtime/EventLoop.h"
#include "Transport/Transport.h"

namespace messaging {

class InMemoryTransport : public Transport {
  public:
    explicit InMemoryTransport(EventLoop& loop) : loop_(loop) {}

    void Declare(const Topology& topology, Completion declared = {}) override;
    Status DeclareNow(const Topology& topology);
    void Publish(const std::string& exchange, TransportMessage message, Completion confirmed) override;
    ConsumerId Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) override;
    void Cancel(ConsumerId consumer) override;
    bool IsConsuming(ConsumerId consumer) const override;
    void Ack(const Delivery& delivery) override;
    void Nack(const Delivery& delivery, bool requeue) override;
    bool IsConnected() const override { return available_; }
    bool IsInProcess() const override { return true; }
    std::string BaseAddress() const override { return "loopback://localhost/"; }

    // Inspection and control; loop thread only (use EventLoop::Invoke from a test thread).
    void SetAvailable(bool available);
    // Stops delivering to the consumers of `queue` while the connection stays up, as a broker does
    // when the queue is deleted under them.
    void CancelConsumersOf(const std::string& queue);
    // Deletes the queue, its messages and its bindings, as an operator can at runtime; its exchange stays.
    void DeleteQueue(const std::string& queue);
    // The next `count` publishes to `exchange` are refused (not routed, confirmed with a failure).
    void RejectPublishesTo(const std::string& exchange, int count) { rejected_publishes_[exchange] = count; }
    std::vector<TransportMessage> ReadyMessages(const std::string& queue) const;
    std::size_t ReadyCount(const std::string& queue) const;
    std::size_t UnackedCount(const std::string& queue) const;
    // Queues bound directly or through exchange bindings to `exchange`.
    std::set<std::string> RouteOf(const std::string& exchange) const;

  private:
    struct Stored {
        TransportMessage message;
        std::string exchange;
        bool redelivered = false;
    };
    struct Exchange {
        ExchangeSpec spec;
        std::vector<std::string> exchange_destinations;
        std::vector<std::string> queue_destinations;
    };
    struct Queue {
        QueueSpec spec;
        std::deque<Stored> ready;
        std::map<std::uint64_t, std::pair<ConsumerId, Stored>> unacked;
        std::vector<ConsumerId> consumers;
        std::size_t next_consumer = 0;
        bool dispatch_scheduled = false;
    };
    struct Consumer {
        std::string queue;
        std::uint16_t prefetch = 0;
        DeliveryHandler handler;
        std::size_t unacked = 0;
    };

    void ScheduleDispatch(const std::string& queue);
    void DispatchQueue(const std::string& queue);
    void Settle(const Delivery& delivery, bool requeue, bool ack);

    EventLoop& loop_;
    std::map<std::string, Exchange> exchanges_;
    std::map<std::string, Queue> queues_;
    std::map<ConsumerId, Consumer> consumers_;
    ConsumerId next_consumer_id_ = 1;
    std::uint64_t next_delivery_tag_ = 1;
    bool available_ = true;
    std::map<std::string, int> rejected_publishes_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // posted work checks it still exists
};

}  // namespace messaging
