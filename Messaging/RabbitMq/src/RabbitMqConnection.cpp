// The connection's life: connecting, reading frames, heartbeats, losing the connection and
// reconnecting, closing.
#include "RabbitMq/RabbitMqTransport.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "RabbitMqChannels.h"

namespace messaging {

RabbitMqTransport::RabbitMqTransport(EventLoop& loop, RabbitMqSettings settings, std::string connection_name)
    : loop_(loop),
      settings_(std::move(settings)),
      connection_name_(std::move(connection_name)),
      nodes_(settings_.Nodes()),
      flush_at_turn_end_(loop, [this] { Flush(); }) {}

RabbitMqTransport::~RabbitMqTransport() {
    *alive_ = false;
    closing_ = true;
    stream_.reset();
}

std::string RabbitMqTransport::BaseAddress() const {
    std::string address = "rabbitmq://" + settings_.host;
    if (settings_.port != 5672) address += ":" + std::to_string(settings_.port);
    address += "/";
    if (settings_.virtual_host != "/" && !settings_.virtual_host.empty()) {
        for (char c : settings_.virtual_host) {
            if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '~') {
                address.push_back(c);
            } else {
                char escaped[4];
                std::snprintf(escaped, sizeof escaped, "%%%02X", static_cast<unsigned char>(c));
                address += escaped;
            }
        }
        address += "/";
    }
    return address;
}

Status RabbitMqTransport::Start() {
    if (settings_.username.empty())
        return Status::InvalidArgument("RabbitMQ.Username is not set (appsettings or RabbitMQ__Username)");
    closing_ = false;
    if (phase_ == Phase::kIdle) Connect();
    return Status::Ok();
}

void RabbitMqTransport::Connect() {
    ++generation_;
    phase_ = Phase::kConnecting;
    // Each attempt goes to the node after the one tried last: a dead node costs one attempt.
    node_ = nodes_[next_node_ % nodes_.size()];
    next_node_ = (next_node_ + 1) % nodes_.size();
    reader_.Reset();
    writer_.Clear();
    writer_.set_frame_max(kPreferredFrameMax);
    pending_replies_.clear();
    incoming_.clear();
    ClearBlocked();
    last_received_ = std::chrono::steady_clock::now();
    stream_ = std::make_unique<TcpStream>(
        loop_, TcpStream::Callbacks{[this] {
                                        writer_.AppendProtocolHeader();
                                        Flush();
                                    },
                                    [this](const char* data, std::size_t size) { OnBytes(data, size); },
                                    [this](int status) {
                                        ConnectionLost(status == UV_EOF
                                                           ? std::string("the broker closed the socket")
                                                           : std::string("socket: ") + uv_strerror(status));
                                    }});
    // One deadline for the name lookup, the TCP connect and the whole AMQP handshake.
    handshake_timer_ = std::make_unique<Timer>(loop_);
    handshake_timer_->Start(std::chrono::seconds(settings_.connection_timeout_seconds), [this] {
        if (phase_ == Phase::kConnecting)
            ConnectionLost("no AMQP handshake within " + std::to_string(settings_.connection_timeout_seconds) + " s");
    });
    stream_->Connect(node_.host, node_.port);
}

void RabbitMqTransport::OnBytes(const char* data, std::size_t size) {
    last_received_ = std::chrono::steady_clock::now();
    reader_.Append(data, size);
    const std::uint64_t generation = generation_;
    while (generation == generation_) {
        const auto frame = reader_.Next();
        if (!frame) break;
        OnFrame(*frame);
        pool_.Recycle();
    }
    if (generation == generation_ && !reader_.error().empty()) ConnectionLost("AMQP framing: " + reader_.error());
}

void RabbitMqTransport::OnFrame(const AmqpFrame& frame) {
    switch (frame.type) {
        case AMQP_FRAME_HEARTBEAT:
            return;
        case AMQP_FRAME_HEADER:
            if (phase_ == Phase::kOpen) OnContentHeader(frame.channel, frame.payload);
            return;
        case AMQP_FRAME_BODY:
            if (phase_ == Phase::kOpen) OnContentBody(frame.channel, frame.payload);
            return;
        case AMQP_FRAME_METHOD:
            break;
        default:
            ConnectionLost("AMQP framing: unknown frame type " + std::to_string(frame.type));
            return;
    }
    const auto method = DecodeMethod(frame.payload, pool_.get());
    if (!method) {
        ConnectionLost("AMQP framing: a method frame could not be decoded");
        return;
    }
    if (frame.channel == 0 && phase_ == Phase::kConnecting)
        OnHandshakeMethod(method->first, method->second);
    else
        OnMethod(frame.channel, method->first, method->second);
}

void RabbitMqTransport::OnConnectionClose(const amqp_connection_close_t& close) {
    // The broker ends the connection (a refused login, an operator, a shutdown): answer, then drop it.
    const std::string reason = CloseReason("connection", close.reply_code, close.reply_text);
    amqp_connection_close_ok_t close_ok{};
    Send(0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
    Flush();
    ConnectionLost(reason);
}

void RabbitMqTransport::OnOpened() {
    handshake_timer_.reset();
    phase_ = Phase::kOpen;
    reconnect_attempts_ = 0;
    next_publish_tag_ = 1;
    last_error_.clear();
    spdlog::info("connected to RabbitMQ at {} vhost '{}' as {}", node_.ToString(), settings_.virtual_host,
                 connection_name_);
    for (auto& entry : topology_) SendDeclarations(entry);
    for (auto& [id, consumer] : consumers_) StartConsumer(id);
    StartQueueChecks();
    if (heartbeat_seconds_ > 0) {
        heartbeat_timer_ = std::make_unique<Timer>(loop_);
        const auto period = std::chrono::milliseconds(heartbeat_seconds_ * 1000 / 2);
        heartbeat_timer_->Start(
            period, [this] { OnHeartbeatTick(); }, period);
    }
}

void RabbitMqTransport::OnHeartbeatTick() {
    if (phase_ != Phase::kOpen) return;
    const auto silent = std::chrono::steady_clock::now() - last_received_;
    if (silent > std::chrono::seconds(2 * heartbeat_seconds_)) {
        ConnectionLost("no frame or heartbeat from the broker for " +
                       std::to_string(std::chrono::duration_cast<std::chrono::seconds>(silent).count()) + " s");
        return;
    }
    if (!wrote_since_tick_) {
        writer_.AppendHeartbeat();
        Flush();
    }
    wrote_since_tick_ = false;
}

void RabbitMqTransport::ConnectionLost(const std::string& reason) {
    if (phase_ == Phase::kIdle) return;
    const bool was_open = phase_ == Phase::kOpen;
    ++generation_;  // deliveries of this connection can no longer be settled
    phase_ = Phase::kIdle;
    stream_.reset();
    handshake_timer_.reset();
    heartbeat_timer_.reset();
    close_timer_.reset();
    queue_check_timer_.reset();
    for (auto& [id, consumer] : consumers_) {
        consumer.tag.clear();
        consumer.problem.clear();
    }
    writer_.Clear();
    acks_.clear();
    unsettled_.clear();
    std::vector<Completion> unanswered;
    for (auto& [channel, replies] : pending_replies_)
        for (auto& reply : replies)
            if (reply.outcome) unanswered.push_back(std::move(reply.outcome));
    pending_replies_.clear();
    if (!unanswered.empty())
        loop_.Post([alive = std::weak_ptr<bool>(alive_), unanswered = std::move(unanswered), reason] {
            if (alive.expired()) return;
            for (const auto& outcome : unanswered) outcome(Status::Unavailable(reason));
        });
    incoming_.clear();
    if (!blocked_reason_.empty()) spdlog::warn("RabbitMQ connection ended while publishing was blocked");
    ClearBlocked();
    // Publishes that were not confirmed may or may not have reached the broker: report failure so the
    // caller keeps the message (outbox) or its delivery (nack -> redelivery).
    auto unconfirmed = std::move(pending_confirms_);
    pending_confirms_.clear();
    returnable_.clear();
    if (!unconfirmed.empty())
        loop_.Post([alive = std::weak_ptr<bool>(alive_), unconfirmed = std::move(unconfirmed), reason]() mutable {
            if (alive.expired()) return;
            for (auto& [tag, completion] : unconfirmed) completion(Status::Unavailable("connection lost: " + reason));
        });
    if (closing_) {
        FinishClose();
        return;
    }
    last_error_ = reason;
    if (!refusal_.ok()) {
        spdlog::error("RabbitMQ: not reconnecting: {}", refusal_.message());
        return;
    }
    if (was_open)
        spdlog::error("RabbitMQ connection to {} lost: {}", node_.ToString(), reason);
    else
        spdlog::warn("connecting to RabbitMQ {} failed ({}); attempt {}", node_.ToString(), reason,
                     reconnect_attempts_ + 1);
    ScheduleReconnect();
}

void RabbitMqTransport::ScheduleReconnect() {
    if (closing_) return;
    // The back-off grows with each round of the nodes that all failed, so the next node of a cluster
    // is tried soon after one dies.
    const int rounds = reconnect_attempts_ / static_cast<int>(nodes_.size());
    const auto delay = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(100) * (1 << std::min(rounds, 7)),
                                                           std::chrono::milliseconds(10000));
    ++reconnect_attempts_;
    if (!reconnect_timer_) reconnect_timer_ = std::make_unique<Timer>(loop_);
    reconnect_timer_->Start(delay, [this] {
        if (phase_ == Phase::kIdle && !closing_) Connect();
    });
}

void RabbitMqTransport::Close(std::function<void()> closed) {
    closing_ = true;
    closed_ = std::move(closed);
    reconnect_timer_.reset();
    if (phase_ == Phase::kOpen) {
        amqp_connection_close_t close{};
        close.reply_code = AMQP_REPLY_SUCCESS;
        close.reply_text = amqp_cstring_bytes("closed");
        Send(0, AMQP_CONNECTION_CLOSE_METHOD, &close);
        Flush();
        phase_ = Phase::kClosing;
        close_timer_ = std::make_unique<Timer>(loop_);
        close_timer_->Start(std::chrono::seconds(settings_.connection_timeout_seconds),
                            [this] { ConnectionLost("the broker did not confirm the close in time"); });
        return;
    }
    if (phase_ == Phase::kIdle)
        FinishClose();
    else
        ConnectionLost("closed");
}

void RabbitMqTransport::FinishClose() {
    stream_.reset();
    auto closed = std::move(closed_);
    closed_ = nullptr;
    if (closed)
        loop_.Post([alive = std::weak_ptr<bool>(alive_), closed = std::move(closed)] {
            if (!alive.expired()) closed();
        });
}

void RabbitMqTransport::SetBlocked(std::string reason) {
    if (blocked_reason_.empty()) blocked_since_ = std::chrono::steady_clock::now();
    blocked_reason_ = reason.empty() ? "no reason given" : std::move(reason);
}

void RabbitMqTransport::ClearBlocked() {
    if (!blocked_reason_.empty()) blocked_before_ += std::chrono::steady_clock::now() - blocked_since_;
    blocked_reason_.clear();
}

std::chrono::steady_clock::duration RabbitMqTransport::PublishingBlockedTime() const {
    if (blocked_reason_.empty()) return blocked_before_;
    return blocked_before_ + (std::chrono::steady_clock::now() - blocked_since_);
}

}  // namespace messaging
