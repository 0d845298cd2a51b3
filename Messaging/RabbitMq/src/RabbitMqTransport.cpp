#include "RabbitMq/RabbitMqTransport.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "RabbitMq/AckPlan.h"
#include "RabbitMq/FieldTable.h"

namespace messaging {
namespace {

// Consumers, their acks and nacks use one channel; declarations, publishes and their confirms use
// another, as MassTransit keeps receive endpoints and publishing apart. On the broker each channel is
// a process of its own, so deliveries and acks do not queue behind the publishes of the connection.
constexpr std::uint16_t kConsumeChannel = 1;
constexpr std::uint16_t kPublishChannel = 2;
constexpr std::size_t kFlushThreshold = 256 * 1024;  // hand buffered frames to the socket beyond this much
constexpr std::uint32_t kPreferredFrameMax = 131072;

std::string CloseReason(const char* who, std::uint16_t code, amqp_bytes_t text) {
    return std::string(who) + " closed by the broker: " + std::to_string(code) + " " + AmqpString(text);
}

// A field-table entry that lives as long as the strings it points to.
amqp_table_entry_t Entry(const char* key, amqp_field_value_t value) {
    amqp_table_entry_t entry{};
    entry.key = amqp_cstring_bytes(key);
    entry.value = value;
    return entry;
}
amqp_field_value_t Bool(bool value) {
    amqp_field_value_t field{};
    field.kind = AMQP_FIELD_KIND_BOOLEAN;
    field.value.boolean = value;
    return field;
}
amqp_field_value_t Text(const std::string& value) {
    amqp_field_value_t field{};
    field.kind = AMQP_FIELD_KIND_UTF8;
    field.value.bytes = AmqpBytes(value);
    return field;
}

}  // namespace

RabbitMqTransport::RabbitMqTransport(EventLoop& loop, RabbitMqSettings settings, std::string connection_name)
    : loop_(loop),
      settings_(std::move(settings)),
      connection_name_(std::move(connection_name)),
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
    reader_.Reset();
    writer_.Clear();
    writer_.set_frame_max(kPreferredFrameMax);
    pending_replies_.clear();
    incoming_.clear();
    blocked_reason_.clear();
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
    stream_->Connect(settings_.host, settings_.port);
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

void RabbitMqTransport::OnHandshakeMethod(amqp_method_number_t method, void* decoded) {
    switch (method) {
        case AMQP_CONNECTION_START_METHOD: {
            auto* start = static_cast<amqp_connection_start_t*>(decoded);
            if (AmqpString(start->mechanisms).find("PLAIN") == std::string::npos) {
                ConnectionLost("the broker does not offer PLAIN authentication");
                return;
            }
            std::vector<amqp_table_entry_t> capabilities = {
                Entry("publisher_confirms", Bool(true)), Entry("exchange_exchange_bindings", Bool(true)),
                Entry("basic.nack", Bool(true)),         Entry("consumer_cancel_notify", Bool(true)),
                Entry("connection.blocked", Bool(true)), Entry("authentication_failure_close", Bool(true))};
            amqp_field_value_t capability_table{};
            capability_table.kind = AMQP_FIELD_KIND_TABLE;
            capability_table.value.table = amqp_table_t{static_cast<int>(capabilities.size()), capabilities.data()};
            const std::string product = "MassTransitSagaCpp";
            std::vector<amqp_table_entry_t> properties = {Entry("product", Text(product)),
                                                          Entry("connection_name", Text(connection_name_)),
                                                          Entry("capabilities", capability_table)};
            std::string response;
            response.push_back('\0');
            response += settings_.username;
            response.push_back('\0');
            response += settings_.password;
            amqp_connection_start_ok_t start_ok{};
            start_ok.client_properties = amqp_table_t{static_cast<int>(properties.size()), properties.data()};
            start_ok.mechanism = amqp_cstring_bytes("PLAIN");
            start_ok.response = AmqpBytes(response);
            start_ok.locale = amqp_cstring_bytes("en_US");
            Send(0, AMQP_CONNECTION_START_OK_METHOD, &start_ok);
            Flush();
            return;
        }
        case AMQP_CONNECTION_TUNE_METHOD: {
            auto* tune = static_cast<amqp_connection_tune_t*>(decoded);
            const std::uint32_t frame_max =
                tune->frame_max == 0 ? kPreferredFrameMax : std::min(tune->frame_max, kPreferredFrameMax);
            heartbeat_seconds_ = static_cast<std::uint16_t>(settings_.heartbeat_seconds);
            if (tune->heartbeat != 0 && tune->heartbeat < heartbeat_seconds_) heartbeat_seconds_ = tune->heartbeat;
            amqp_connection_tune_ok_t tune_ok{};
            tune_ok.channel_max = tune->channel_max == 0 ? 2047 : tune->channel_max;
            tune_ok.frame_max = frame_max;
            tune_ok.heartbeat = heartbeat_seconds_;
            Send(0, AMQP_CONNECTION_TUNE_OK_METHOD, &tune_ok);
            writer_.set_frame_max(frame_max);
            reader_.set_max_frame(frame_max);
            amqp_connection_open_t open{};
            open.virtual_host = AmqpBytes(settings_.virtual_host);
            open.capabilities = amqp_empty_bytes;
            Send(0, AMQP_CONNECTION_OPEN_METHOD, &open);
            Flush();
            return;
        }
        case AMQP_CONNECTION_OPEN_OK_METHOD: {
            amqp_channel_open_t open{};
            SendRpc(kConsumeChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "channel.open");
            SendRpc(kPublishChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "channel.open");
            amqp_confirm_select_t select{};
            SendRpc(kPublishChannel, AMQP_CONFIRM_SELECT_METHOD, &select, AMQP_CONFIRM_SELECT_OK_METHOD,
                    "confirm.select", [this](void*) {
                        // The consume channel's open-ok came first: its reply was asked for first.
                        OnOpened();
                    });
            return;
        }
        case AMQP_CONNECTION_CLOSE_METHOD:
            OnConnectionClose(*static_cast<amqp_connection_close_t*>(decoded));
            return;
        default:
            ConnectionLost("unexpected method " + std::to_string(method) + " during the AMQP handshake");
    }
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
    spdlog::info("connected to RabbitMQ at {}:{} vhost '{}' as {}", settings_.host, settings_.port,
                 settings_.virtual_host, connection_name_);
    for (auto& entry : topology_) SendDeclarations(entry);
    for (auto& [id, consumer] : consumers_) StartConsumer(id);
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

void RabbitMqTransport::OnMethod(std::uint16_t channel, amqp_method_number_t method, void* decoded) {
    if (phase_ == Phase::kClosing) {
        // Only the end of the connection matters now; deliveries still arriving are requeued by it.
        if (method == AMQP_CONNECTION_CLOSE_OK_METHOD || method == AMQP_CONNECTION_CLOSE_METHOD)
            ConnectionLost("closed");
        return;
    }
    switch (method) {
        case AMQP_BASIC_DELIVER_METHOD: {
            auto* deliver = static_cast<amqp_basic_deliver_t*>(decoded);
            IncomingContent& content = incoming_[channel];
            content = IncomingContent{};
            content.active = true;
            content.consumer_tag = AmqpString(deliver->consumer_tag);
            content.delivery.delivery_tag = deliver->delivery_tag;
            content.delivery.redelivered = deliver->redelivered != 0;
            content.delivery.exchange = AmqpString(deliver->exchange);
            content.delivery.message.routing_key = AmqpString(deliver->routing_key);
            content.delivery.connection_generation = generation_;
            unsettled_.insert(deliver->delivery_tag);
            return;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            auto* returned = static_cast<amqp_basic_return_t*>(decoded);
            IncomingContent& content = incoming_[channel];
            content = IncomingContent{};
            content.active = true;
            content.returned = true;
            content.return_reason = std::to_string(returned->reply_code) + " " + AmqpString(returned->reply_text);
            content.delivery.exchange = AmqpString(returned->exchange);
            content.delivery.message.routing_key = AmqpString(returned->routing_key);
            return;
        }
        case AMQP_BASIC_ACK_METHOD: {
            auto* ack = static_cast<amqp_basic_ack_t*>(decoded);
            Confirm(ack->delivery_tag, ack->multiple != 0, true);
            return;
        }
        case AMQP_BASIC_NACK_METHOD: {
            auto* nack = static_cast<amqp_basic_nack_t*>(decoded);
            Confirm(nack->delivery_tag, nack->multiple != 0, false);
            return;
        }
        case AMQP_BASIC_CANCEL_METHOD:
            ConnectionLost("the broker cancelled a consumer (was its queue deleted?)");
            return;
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            auto* blocked = static_cast<amqp_connection_blocked_t*>(decoded);
            blocked_reason_ = AmqpString(blocked->reason);
            if (blocked_reason_.empty()) blocked_reason_ = "no reason given";
            spdlog::warn("RabbitMQ blocks publishing ({}): publishes wait until the alarm clears", blocked_reason_);
            return;
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            spdlog::info("RabbitMQ unblocked publishing (the alarm '{}' cleared)", blocked_reason_);
            blocked_reason_.clear();
            return;
        case AMQP_CHANNEL_CLOSE_METHOD: {
            auto* close = static_cast<amqp_channel_close_t*>(decoded);
            std::string reason =
                CloseReason(("channel " + std::to_string(channel)).c_str(), close->reply_code, close->reply_text);
            bool declaring = false;
            std::string borrowed_exchange;
            std::string on_demand_queue;
            if (auto it = pending_replies_.find(channel); it != pending_replies_.end() && !it->second.empty()) {
                const auto expected = it->second.front().reply;
                declaring = expected == AMQP_QUEUE_DECLARE_OK_METHOD || expected == AMQP_EXCHANGE_DECLARE_OK_METHOD;
                reason = it->second.front().what + ": " + reason;
                borrowed_exchange = it->second.front().borrowed_exchange;
                on_demand_queue = it->second.front().on_demand_queue;
            }
            // 406 to a declaration: the entity exists with other properties or arguments. Another
            // party's exchange serves as it is: forget the declaration, so that the reconnect does
            // not repeat it and what was to be sent there goes to the existing exchange. 403: this
            // user may not declare it; forget the declaration too, and refuse what is sent there
            // from now on, as MassTransit's send fails, instead of closing the channel each time.
            const bool borrowed_refusal =
                declaring && !borrowed_exchange.empty() &&
                (close->reply_code == AMQP_PRECONDITION_FAILED || close->reply_code == AMQP_ACCESS_REFUSED);
            const bool on_demand_refusal =
                declaring && !on_demand_queue.empty() &&
                (close->reply_code == AMQP_PRECONDITION_FAILED || close->reply_code == AMQP_ACCESS_REFUSED);
            if (on_demand_refusal) {
                // Only the messages that need this queue wait; it is not declared again on reconnect.
                std::erase_if(topology_, [&](const DeclaredTopology& entry) {
                    return entry.topology.on_demand && !entry.topology.queues.empty() &&
                           entry.topology.queues.front().name == on_demand_queue;
                });
                if (on_demand_refusals_.Refuse(on_demand_queue, reason))
                    spdlog::error(
                        "RabbitMQ: {} cannot be used as this service declares it ({}). The messages that "
                        "need it stay in their queues and are tried again later; everything else goes on",
                        on_demand_queue, reason);
            } else if (borrowed_refusal) {
                std::erase_if(topology_, [&](const DeclaredTopology& entry) {
                    const auto& exchanges = entry.topology.exchanges;
                    return entry.topology.borrowed &&
                           std::any_of(exchanges.begin(), exchanges.end(),
                                       [&](const ExchangeSpec& spec) { return spec.name == borrowed_exchange; });
                });
                if (close->reply_code == AMQP_ACCESS_REFUSED) refused_exchanges_[borrowed_exchange] = reason;
            } else if (declaring && close->reply_code == AMQP_PRECONDITION_FAILED)
                refusal_ = Status::PreconditionFailed(
                    "the broker refused a declaration because what exists differs. " + reason +
                    ". Make the settings match the existing entity, or delete it, then restart the service");
            amqp_channel_close_ok_t close_ok{};
            Send(channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
            Flush();
            spdlog::error("RabbitMQ: {}", reason);
            ConnectionLost(reason);
            return;
        }
        case AMQP_CONNECTION_CLOSE_METHOD:
            OnConnectionClose(*static_cast<amqp_connection_close_t*>(decoded));
            return;
        default:
            break;
    }
    auto& replies = pending_replies_[channel];
    if (replies.empty() || replies.front().reply != method) {
        ConnectionLost("unexpected method " + std::to_string(method) + " on channel " + std::to_string(channel));
        return;
    }
    PendingReply reply = std::move(replies.front());
    replies.pop_front();
    const std::uint64_t generation = generation_;
    if (reply.done) reply.done(decoded);
    if (reply.outcome) reply.outcome(Status::Ok());
    for (auto& work : reply.then)
        if (generation == generation_) work();
}

void RabbitMqTransport::OnContentHeader(std::uint16_t channel, std::string_view payload) {
    auto it = incoming_.find(channel);
    if (it == incoming_.end() || !it->second.active || it->second.have_header || payload.size() < 12) {
        ConnectionLost("AMQP framing: a content header without its method");
        return;
    }
    IncomingContent& content = it->second;
    void* decoded = nullptr;
    amqp_bytes_t encoded{payload.size() - 12, const_cast<char*>(payload.data() + 12)};
    if (amqp_decode_properties(AMQP_BASIC_CLASS, pool_.get(), encoded, &decoded) != AMQP_STATUS_OK) {
        ConnectionLost("AMQP framing: message properties could not be decoded");
        return;
    }
    content.have_header = true;
    content.body_size = ReadU64(payload, 4);
    content.delivery.message.properties = DecodeProperties(*static_cast<amqp_basic_properties_t*>(decoded));
    content.delivery.message.body.reserve(content.body_size);
    if (content.body_size == 0) FinishContent(channel);
}

void RabbitMqTransport::OnContentBody(std::uint16_t channel, std::string_view payload) {
    auto it = incoming_.find(channel);
    if (it == incoming_.end() || !it->second.active || !it->second.have_header) {
        ConnectionLost("AMQP framing: a content body without its header");
        return;
    }
    auto& body = it->second.delivery.message.body;
    body.append(payload);
    if (body.size() > it->second.body_size) {
        ConnectionLost("AMQP framing: a content body longer than its header said");
        return;
    }
    if (body.size() == it->second.body_size) FinishContent(channel);
}

void RabbitMqTransport::FinishContent(std::uint16_t channel) {
    IncomingContent content = std::move(incoming_[channel]);
    incoming_[channel] = IncomingContent{};
    if (content.returned) {
        OnReturned(content);
        return;
    }
    for (auto& [id, consumer] : consumers_) {
        if (consumer.tag != content.consumer_tag) continue;
        content.delivery.queue = consumer.queue;
        auto handler = consumer.handler;  // the handler may cancel its own consumer
        handler(std::move(content.delivery));
        return;
    }
    // Its consumer was cancelled while the delivery was on its way: back to the queue.
    Nack(content.delivery, true);
}

void RabbitMqTransport::OnReturned(const IncomingContent& content) {
    // The broker sends basic.return before the basic.ack of the same publish, so the publish is still
    // pending. Returns carry no publish tag: match the oldest unmatched one with the same message id,
    // exchange and routing key (a message published twice at once would be returned twice alike).
    const auto& message = content.delivery.message;
    for (auto& [tag, publish] : returnable_) {
        if (!publish.returned.empty() || publish.message_id != message.properties.message_id ||
            publish.exchange != content.delivery.exchange || publish.routing_key != message.routing_key)
            continue;
        publish.returned = content.return_reason;
        spdlog::warn("RabbitMQ returned message {} published to '{}': {}", message.properties.message_id,
                     content.delivery.exchange, content.return_reason);
        return;
    }
    spdlog::warn("RabbitMQ returned message {} published to '{}' ({}), which no pending publish matches",
                 message.properties.message_id, content.delivery.exchange, content.return_reason);
}

void RabbitMqTransport::Send(std::uint16_t channel, amqp_method_number_t method, void* arguments) {
    // Our methods are a few hundred bytes at most; frame_max is at least 4 KiB.
    if (!writer_.AppendMethod(channel, method, arguments))
        throw std::logic_error("cannot encode AMQP method " + std::to_string(method));
    flush_at_turn_end_.Request();
}

void RabbitMqTransport::SendRpc(std::uint16_t channel, amqp_method_number_t method, void* arguments,
                                amqp_method_number_t reply, std::string what, std::function<void(void*)> done) {
    Send(channel, method, arguments);
    pending_replies_[channel].push_back(PendingReply{reply, std::move(what), std::move(done), {}, {}, {}, {}});
}

void RabbitMqTransport::AfterPublishChannelReplies(std::function<void()> work) {
    auto& replies = pending_replies_[kPublishChannel];
    if (replies.empty())
        work();
    else
        replies.back().then.push_back(std::move(work));
}

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
        if (!replies.empty()) return false;
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

void RabbitMqTransport::StartConsumer(ConsumerId id) {
    // The queue is declared on the publish channel: consume once those declarations are answered.
    AfterPublishChannelReplies([this, id] {
        auto it = consumers_.find(id);
        if (it == consumers_.end() || phase_ != Phase::kOpen) return;
        amqp_basic_qos_t qos{};
        qos.prefetch_count = it->second.prefetch;
        SendRpc(kConsumeChannel, AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD, "basic.qos");
        amqp_basic_consume_t consume{};
        consume.queue = AmqpBytes(it->second.queue);
        consume.consumer_tag = amqp_empty_bytes;
        consume.arguments = amqp_empty_table;
        SendRpc(kConsumeChannel, AMQP_BASIC_CONSUME_METHOD, &consume, AMQP_BASIC_CONSUME_OK_METHOD,
                "basic.consume " + it->second.queue, [this, id](void* decoded) {
                    const std::string tag = AmqpString(static_cast<amqp_basic_consume_ok_t*>(decoded)->consumer_tag);
                    if (auto consumer = consumers_.find(id); consumer != consumers_.end()) {
                        consumer->second.tag = tag;
                        return;
                    }
                    // Cancelled before the broker answered: stop it now.
                    amqp_basic_cancel_t cancel{};
                    cancel.consumer_tag = AmqpBytes(tag);
                    SendRpc(kConsumeChannel, AMQP_BASIC_CANCEL_METHOD, &cancel, AMQP_BASIC_CANCEL_OK_METHOD,
                            "basic.cancel");
                });
    });
}

ConsumerId RabbitMqTransport::Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) {
    const ConsumerId id = next_consumer_id_++;
    consumers_[id] = ConsumerEntry{queue, prefetch, std::move(handler), {}};
    if (IsConnected()) StartConsumer(id);
    return id;
}

void RabbitMqTransport::Cancel(ConsumerId id) {
    auto it = consumers_.find(id);
    if (it == consumers_.end()) return;
    if (IsConnected() && !it->second.tag.empty()) {
        amqp_basic_cancel_t cancel{};
        cancel.consumer_tag = AmqpBytes(it->second.tag);
        SendRpc(kConsumeChannel, AMQP_BASIC_CANCEL_METHOD, &cancel, AMQP_BASIC_CANCEL_OK_METHOD, "basic.cancel");
    }
    consumers_.erase(it);
}

void RabbitMqTransport::Publish(const std::string& exchange, TransportMessage message, Completion confirmed) {
    auto fail = [&](Status status) {
        if (confirmed)
            loop_.Post([alive = std::weak_ptr<bool>(alive_), confirmed = std::move(confirmed), status] {
                if (!alive.expired()) confirmed(status);
            });
    };
    if (!IsConnected()) return fail(Status::Unavailable("not connected to RabbitMQ"));
    if (!refused_exchanges_.empty())
        if (auto refused = refused_exchanges_.find(exchange); refused != refused_exchanges_.end())
            return fail(Status::PermissionDenied("the broker does not let this service declare the exchange '" +
                                                 exchange + "' (" + refused->second + ")"));
    if (auto refused = on_demand_refusals_.Find(exchange))
        return fail(Status::PreconditionFailed("the broker refused the queue '" + exchange + "' (" + *refused + ")"));
    EncodedProperties properties(message.properties);
    const std::size_t mark = writer_.buffer().size();
    amqp_basic_publish_t publish{};
    publish.exchange = AmqpBytes(exchange);
    publish.routing_key = AmqpBytes(message.routing_key);
    publish.mandatory = message.mandatory ? 1 : 0;
    if (!writer_.AppendMethod(kPublishChannel, AMQP_BASIC_PUBLISH_METHOD, &publish) ||
        !writer_.AppendContent(kPublishChannel, properties.get(), message.body)) {
        writer_.buffer().resize(mark);
        return fail(Status::InvalidArgument("the message properties are too large for one frame"));
    }
    const std::uint64_t tag = next_publish_tag_++;
    if (message.mandatory)
        returnable_.emplace(tag, ReturnablePublish{message.properties.message_id, exchange, message.routing_key, {}});
    pending_confirms_.emplace(tag, confirmed ? std::move(confirmed) : Completion([](const Status&) {}));
    if (writer_.buffer().size() >= kFlushThreshold)
        Flush();
    else
        flush_at_turn_end_.Request();
}

void RabbitMqTransport::Flush() {
    if (!stream_) return;
    if (phase_ == Phase::kOpen && !acks_.empty()) {
        const AckPlan plan = PlanAcks(unsettled_, std::move(acks_));
        acks_.clear();
        if (plan.multiple_up_to) {
            amqp_basic_ack_t ack{plan.multiple_up_to, 1};
            writer_.AppendMethod(kConsumeChannel, AMQP_BASIC_ACK_METHOD, &ack);
            unsettled_.erase(unsettled_.begin(), unsettled_.upper_bound(plan.multiple_up_to));
        }
        for (auto tag : plan.single) {
            amqp_basic_ack_t ack{tag, 0};
            writer_.AppendMethod(kConsumeChannel, AMQP_BASIC_ACK_METHOD, &ack);
            unsettled_.erase(tag);
        }
    }
    if (writer_.buffer().empty()) return;
    wrote_since_tick_ = true;
    stream_->Write(writer_.buffer());
    writer_.Clear();
}

void RabbitMqTransport::Ack(const Delivery& delivery) {
    if (!IsConnected() || delivery.connection_generation != generation_) return;  // the broker will redeliver it
    acks_.push_back(delivery.delivery_tag);
    flush_at_turn_end_.Request();
}

void RabbitMqTransport::Nack(const Delivery& delivery, bool requeue) {
    if (!IsConnected() || delivery.connection_generation != generation_) return;
    unsettled_.erase(delivery.delivery_tag);
    amqp_basic_nack_t nack{delivery.delivery_tag, 0, requeue ? amqp_boolean_t{1} : amqp_boolean_t{0}};
    Send(kConsumeChannel, AMQP_BASIC_NACK_METHOD, &nack);
}

void RabbitMqTransport::Confirm(std::uint64_t tag, bool multiple, bool ok) {
    std::vector<std::pair<std::uint64_t, Completion>> done;
    if (multiple) {
        auto end = pending_confirms_.upper_bound(tag);
        for (auto it = pending_confirms_.begin(); it != end; ++it) done.emplace_back(it->first, std::move(it->second));
        pending_confirms_.erase(pending_confirms_.begin(), end);
    } else if (auto it = pending_confirms_.find(tag); it != pending_confirms_.end()) {
        done.emplace_back(it->first, std::move(it->second));
        pending_confirms_.erase(it);
    }
    const Status status = ok ? Status::Ok() : Status::Internal("the broker rejected the message (basic.nack)");
    for (auto& [confirmed_tag, completion] : done) {
        auto returnable = returnable_.find(confirmed_tag);
        if (returnable == returnable_.end()) {
            completion(status);
            continue;
        }
        const std::string returned = std::move(returnable->second.returned);
        const std::string exchange = std::move(returnable->second.exchange);
        returnable_.erase(returnable);
        // A returned message is confirmed too (the broker is done with it), yet it reached no queue.
        if (ok && !returned.empty())
            completion(Status::NotFound("the broker returned the message published to '" + exchange +
                                        "', which reached no queue: " + returned));
        else
            completion(status);
    }
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
    for (auto& [id, consumer] : consumers_) consumer.tag.clear();
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
    blocked_reason_.clear();
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
        spdlog::error("RabbitMQ connection lost: {}", reason);
    else
        spdlog::warn("connecting to RabbitMQ {}:{} failed ({}); attempt {}", settings_.host, settings_.port, reason,
                     reconnect_attempts_ + 1);
    ScheduleReconnect();
}

void RabbitMqTransport::ScheduleReconnect() {
    if (closing_) return;
    const auto delay = std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(100) * (1 << std::min(reconnect_attempts_, 7)), std::chrono::milliseconds(10000));
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

}  // namespace messaging
