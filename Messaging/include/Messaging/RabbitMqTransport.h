// The RabbitMQ transport on rabbitmq-c, driven by the owning event loop: uv_poll watches the
// connection's socket and frames are read without blocking, so deliveries, publisher confirms and
// RPC replies interleave on one connection: consumers and acks on one channel, publishes and their
// confirms on a second. Publisher confirms are on; heartbeats are sent from a loop
// timer. Publishes, acks and nacks are encoded here and written together at the end of each loop turn
// (acks that settle a run of deliveries become one multiple-ack), so a batch costs one write. When the connection drops
// it reconnects with capped exponential back-off, declares its topology again and resumes its consumers; unacked
// deliveries come back from the broker. rabbitmq-c is not thread-safe: only the loop thread may touch this object.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "Messaging/EventLoop.h"
#include "Messaging/Settings.h"
#include "Messaging/Transport.h"

namespace messaging {

// How a turn's acks go on the wire: the run of them that settles the oldest unsettled deliveries
// becomes one basic.ack with `multiple` up to `multiple_up_to` (0: no such run of two or more), and
// every other ack is sent on its own (`single`, ascending).
struct AckPlan {
    std::uint64_t multiple_up_to = 0;
    std::vector<std::uint64_t> single;
};
AckPlan PlanAcks(const std::set<std::uint64_t>& unsettled, std::vector<std::uint64_t> acks);

class RabbitMqTransport : public Transport {
  public:
    RabbitMqTransport(EventLoop& loop, RabbitMqSettings settings, std::string connection_name);
    ~RabbitMqTransport() override;

    // Connects now (returning why it failed, if it did) and keeps reconnecting in the background.
    Status Start();
    // Closes the channel and connection cleanly and stops reconnecting.
    void Close();

    Status Declare(const Topology& topology) override;
    void Publish(const std::string& exchange, TransportMessage message, Completion confirmed) override;
    ConsumerId Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) override;
    void Cancel(ConsumerId consumer) override;
    void Ack(const Delivery& delivery) override;
    void Nack(const Delivery& delivery, bool requeue) override;
    bool IsConnected() const override { return connected_; }
    std::string BaseAddress() const override;

  private:
    struct Connection;
    struct ConsumerEntry {
        std::string queue;
        std::uint16_t prefetch;
        DeliveryHandler handler;
        std::string tag;  // broker-generated; empty while disconnected
    };

    Status Connect();
    Status DeclareNow(const Topology& topology);
    Status StartConsumer(ConsumerEntry& consumer);
    void OnReadable();
    // The outcome of the synchronous RPC just sent on the open connection: OK, or `code` with `what` and
    // the broker's reply. rabbitmq-c keeps the frames it read past the reply (deliveries, confirms) in
    // its own buffers, which the socket's readiness no longer announces, so a read of them is scheduled
    // for a later turn instead of waiting for more traffic or the heartbeat.
    Status RpcStatus(StatusCode code, const std::string& what);
    void HandleMethod(std::uint16_t channel, std::uint32_t method_id, void* decoded);
    void ConnectionLost(const std::string& reason);
    void ScheduleReconnect();
    void Confirm(std::uint64_t tag, bool multiple, bool ok);
    // Appends one method frame on `channel` to the output buffer.
    void AppendMethod(std::uint16_t channel, std::uint32_t method_id, void* arguments);
    // Encodes the pending acks and writes the output buffer; false (and the connection is dropped) on
    // a socket error. Called before rabbitmq-c writes anything itself, so frames never interleave.
    bool FlushOutput();

    EventLoop& loop_;
    RabbitMqSettings settings_;
    std::string connection_name_;
    std::unique_ptr<Connection> connection_;
    std::unique_ptr<PollWatcher> poll_;
    std::unique_ptr<Timer> heartbeat_timer_;
    std::unique_ptr<Timer> reconnect_timer_;
    bool connected_ = false;
    bool closing_ = false;
    std::uint64_t generation_ = 0;
    bool buffered_read_posted_ = false;  // a read of frames buffered by an RPC is waiting for its turn
    int reconnect_attempts_ = 0;
    std::uint64_t next_publish_tag_ = 1;
    std::map<std::uint64_t, Completion> pending_confirms_;
    std::string output_;                 // encoded frames not yet written
    std::vector<char> scratch_;          // encoding space, one frame long
    EndOfTurnTask flush_at_turn_end_;    // FlushOutput, once per loop turn
    std::set<std::uint64_t> unsettled_;  // delivery tags neither acked nor nacked yet
    std::vector<std::uint64_t> acks_;    // acks not yet encoded
    std::vector<Topology> topology_;
    std::map<ConsumerId, ConsumerEntry> consumers_;
    ConsumerId next_consumer_id_ = 1;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace messaging
