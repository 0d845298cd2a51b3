// The RabbitMQ transport: an AMQP 0-9-1 client that lives entirely on the owning event loop and never
// blocks it. Bytes go through a TcpStream; frames are cut as they arrive (a delivery split across
// reads simply waits for the rest), every method that expects a reply completes a callback, and
// writes queue when the broker is slow to read. One connection, three channels: consumers, their acks
// and basic.qos/consume/cancel on one; topology declarations, publishes and their confirms on the
// other, so a publish always follows the declaration of its exchange; and a third that checks now and
// then that the broker still serves each consumed queue, where a refusal closes only that channel. When the broker
// raises a memory or disk alarm (connection.blocked) publishes wait, still buffered, until it clears. A mandatory
// publish the broker returns (basic.return, before its confirm) completes with NotFound. A lost connection is rebuilt
// with capped exponential back-off, its topology declared again and its consumers resumed; unacked deliveries come back
// from the broker. With the nodes of a cluster, each attempt goes to the next node. Loop thread only.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "RabbitMq/AmqpFrames.h"
#include "RabbitMq/DeclarationRefusals.h"
#include "RabbitMq/RabbitMqSettings.h"
#include "Runtime/EventLoop.h"
#include "Runtime/TcpStream.h"
#include "Transport/Transport.h"

namespace messaging {

class RabbitMqTransport : public Transport {
  public:
    RabbitMqTransport(EventLoop& loop, RabbitMqSettings settings, std::string connection_name);
    ~RabbitMqTransport() override;  // drops the connection at once; Close() first to end it cleanly

    // Starts connecting and keeps reconnecting in the background. Fails only for settings that can
    // never connect (no user name); IsConnected() says when the connection is up.
    Status Start();
    // Sends what is buffered, closes the connection (waiting at most the connection timeout for the
    // broker's close-ok) and stops reconnecting; `closed` runs afterwards on the loop thread.
    void Close(std::function<void()> closed = {});

    void Declare(const Topology& topology, Completion declared = {}) override;
    void Publish(const std::string& exchange, TransportMessage message, Completion confirmed) override;
    ConsumerId Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) override;
    void Cancel(ConsumerId consumer) override;
    bool IsConsuming(ConsumerId consumer) const override {
        auto it = consumers_.find(consumer);
        return IsConnected() && it != consumers_.end() && !it->second.tag.empty() && it->second.problem.empty();
    }
    std::string ConsumerProblem(ConsumerId consumer) const override {
        auto it = consumers_.find(consumer);
        return IsConnected() && it != consumers_.end() ? it->second.problem : std::string();
    }
    void Ack(const Delivery& delivery) override;
    void Nack(const Delivery& delivery, bool requeue) override;
    void SendPendingAcks() override { Flush(); }
    bool IsConnected() const override { return phase_ == Phase::kOpen; }
    bool IsPublishingBlocked() const override { return IsConnected() && !blocked_reason_.empty(); }
    std::chrono::steady_clock::duration PublishingBlockedTime() const override;
    Status TopologyRefusal() const override { return refusal_; }
    std::vector<std::pair<std::string, std::string>> RefusedOnDemandQueues() const override {
        return on_demand_refusals_.List();
    }
    bool IsReconnectScheduled() const { return reconnect_timer_ && reconnect_timer_->IsActive(); }
    std::string BaseAddress() const override;

    // Connected, every declaration answered and every consumer started.
    bool IsSettled() const;
    // Why the last connection attempt failed or the last connection ended; empty while none has.
    const std::string& last_error() const { return last_error_; }
    // The node connected to, or tried last while not connected.
    const BrokerNode& node() const { return node_; }

  private:
    enum class Phase { kIdle, kConnecting, kOpen, kClosing };
    struct ConsumerEntry {
        std::string queue;
        std::uint16_t prefetch;
        DeliveryHandler handler;
        std::string tag;      // broker-generated; empty while not consuming
        std::string problem;  // why the queue check found the queue not serving it; see ConsumerProblem
    };
    // A method sent that expects a reply on its channel: replies come in the order of the requests.
    struct PendingReply {
        amqp_method_number_t reply;
        std::string what;
        std::function<void(void* decoded)> done;
        std::vector<std::function<void()>> then;  // run after `done`: work ordered behind this reply
        Completion outcome;                       // told OK after `done`, or why the reply never came
        std::string borrowed_exchange;            // declaring this exchange of a borrowed topology
        std::string on_demand_queue;              // declaring (part of) this on-demand queue's topology
        ConsumerId checked_consumer = 0;          // the queue check of this consumer's queue
    };
    struct DeclaredTopology {
        Topology topology;
        Completion declared;  // the first outcome only; empty once told
    };
    // A mandatory publish not confirmed yet: what identifies it if the broker returns it.
    struct ReturnablePublish {
        std::string message_id;
        std::string exchange;
        std::string routing_key;
        std::string returned;  // the broker's reason once it returned the message
    };
    // A delivery or returned message whose content frames are still arriving.
    struct IncomingContent {
        bool active = false;
        bool returned = false;
        std::string return_reason;
        std::string consumer_tag;
        Delivery delivery;
        std::uint64_t body_size = 0;
        bool have_header = false;
    };

    void Connect();
    void OnBytes(const char* data, std::size_t size);
    void OnFrame(const AmqpFrame& frame);
    void OnHandshakeMethod(amqp_method_number_t method, void* decoded);
    void OnMethod(std::uint16_t channel, amqp_method_number_t method, void* decoded);
    // The broker closed a channel: the queue check's is opened again; on the others it records what a
    // refused declaration means, then drops the connection.
    void OnChannelClose(std::uint16_t channel, const amqp_channel_close_t& close);
    void OnContentHeader(std::uint16_t channel, std::string_view payload);
    void OnContentBody(std::uint16_t channel, std::string_view payload);
    void FinishContent(std::uint16_t channel);
    // Marks the mandatory publish the returned message came from, so its confirm reports NotFound.
    void OnReturned(const IncomingContent& content);
    void OnConnectionClose(const amqp_connection_close_t& close);
    void OnOpened();
    void SendRpc(std::uint16_t channel, amqp_method_number_t method, void* arguments, amqp_method_number_t reply,
                 std::string what, std::function<void(void* decoded)> done = {});
    // Runs `work` once every reply the publish channel awaits now has arrived.
    void AfterPublishChannelReplies(std::function<void()> work);
    void SendDeclarations(DeclaredTopology& entry);
    void StartConsumer(ConsumerId id);
    void OnHeartbeatTick();
    // The queue check (RabbitMqQueueCheck.cpp): a passive queue.declare of each consumed queue on its
    // own channel. The broker answers with the queue's consumer count, which counts ours while the
    // queue serves it; a queue without a leader answers 0, or closes the channel (404 after a
    // timeout, on newer brokers). Only that channel closes: it is opened again for the next check.
    void StartQueueChecks();
    void CheckQueues();
    void OnQueueCheckChannelClosed(const amqp_channel_close_t& close);
    void Confirm(std::uint64_t tag, bool multiple, bool ok);
    void Send(std::uint16_t channel, amqp_method_number_t method, void* arguments);
    // Encodes the pending acks and hands the buffered frames to the socket.
    void Flush();
    void ConnectionLost(const std::string& reason);
    void ScheduleReconnect();
    void FinishClose();

    EventLoop& loop_;
    RabbitMqSettings settings_;
    std::string connection_name_;
    std::vector<BrokerNode> nodes_;  // settings_.Nodes(), never empty
    std::size_t next_node_ = 0;      // where the next connection attempt goes
    BrokerNode node_;                // where the current or last attempt went
    Phase phase_ = Phase::kIdle;
    bool closing_ = false;  // Close() was called: no reconnect
    std::function<void()> closed_;
    std::unique_ptr<TcpStream> stream_;
    FrameReader reader_;
    FrameWriter writer_;
    DecodePool pool_;
    std::unique_ptr<Timer> handshake_timer_;
    std::unique_ptr<Timer> heartbeat_timer_;
    std::unique_ptr<Timer> reconnect_timer_;
    std::unique_ptr<Timer> close_timer_;
    std::unique_ptr<Timer> queue_check_timer_;
    bool queue_check_channel_open_ = false;
    std::chrono::steady_clock::time_point last_received_;
    bool wrote_since_tick_ = false;
    std::uint16_t heartbeat_seconds_ = 0;
    // Marks publishing blocked (connection.blocked) with the broker's reason, or no longer blocked.
    void SetBlocked(std::string reason);
    void ClearBlocked();
    std::string blocked_reason_;  // set while the broker blocks publishing (connection.blocked)
    std::chrono::steady_clock::time_point blocked_since_{};
    std::chrono::steady_clock::duration blocked_before_{};  // the blocks that ended
    std::string last_error_;
    Status refusal_;  // see TopologyRefusal
    // Borrowed exchanges the broker would not let this user declare (403), with the refusal: a
    // publish to one fails at once with PermissionDenied instead of closing the channel again.
    std::map<std::string, std::string> refused_exchanges_;
    DeclarationRefusals on_demand_refusals_;
    std::uint64_t generation_ = 0;
    int reconnect_attempts_ = 0;
    std::uint64_t next_publish_tag_ = 1;
    std::map<std::uint64_t, Completion> pending_confirms_;
    std::map<std::uint64_t, ReturnablePublish> returnable_;  // by publish tag; mandatory publishes only
    std::map<std::uint16_t, std::deque<PendingReply>> pending_replies_;
    std::map<std::uint16_t, IncomingContent> incoming_;
    EndOfTurnTask flush_at_turn_end_;
    std::set<std::uint64_t> unsettled_;  // delivery tags neither acked nor nacked yet
    std::vector<std::uint64_t> acks_;    // acks not yet encoded
    std::vector<DeclaredTopology> topology_;
    std::map<ConsumerId, ConsumerEntry> consumers_;
    ConsumerId next_consumer_id_ = 1;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace messaging
