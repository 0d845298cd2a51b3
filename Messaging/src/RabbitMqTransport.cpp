#include "Messaging/RabbitMqTransport.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace messaging {
namespace {

// Consumers, their acks and nacks, and topology RPCs use one channel; publishes and their confirms use
// another, as MassTransit keeps receive endpoints and publishing apart. On the broker each channel is a
// process of its own, so deliveries and acks do not queue behind the publishes of the same connection.
constexpr amqp_channel_t kConsumeChannel = 1;
constexpr amqp_channel_t kPublishChannel = 2;
constexpr std::size_t kFrameOverhead = 8;            // type, channel, size ... frame-end
constexpr std::size_t kFlushThreshold = 256 * 1024;  // write at once beyond this much buffered

void PutU16(std::string& out, std::uint16_t v) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v & 0xFF));
}
void PutU32(std::string& out, std::uint32_t v) {
    PutU16(out, static_cast<std::uint16_t>(v >> 16));
    PutU16(out, static_cast<std::uint16_t>(v & 0xFFFF));
}
void PutU64(std::string& out, std::uint64_t v) {
    PutU32(out, static_cast<std::uint32_t>(v >> 32));
    PutU32(out, static_cast<std::uint32_t>(v & 0xFFFFFFFF));
}
void PutFrameStart(std::string& out, std::uint8_t type, amqp_channel_t channel, std::size_t payload_size) {
    out.push_back(static_cast<char>(type));
    PutU16(out, channel);
    PutU32(out, static_cast<std::uint32_t>(payload_size));
}

amqp_bytes_t Bytes(const std::string& text) {
    return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}
std::string String(amqp_bytes_t bytes) {
    return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

std::string ReplyText(const amqp_rpc_reply_t& reply) {
    switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return "ok";
        case AMQP_RESPONSE_NONE:
            return "missing RPC reply";
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return amqp_error_string2(reply.library_error);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                auto* close = static_cast<amqp_connection_close_t*>(reply.reply.decoded);
                return "connection closed by the broker: " + std::to_string(close->reply_code) + " " +
                       String(close->reply_text);
            }
            if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                auto* close = static_cast<amqp_channel_close_t*>(reply.reply.decoded);
                return "channel closed by the broker: " + std::to_string(close->reply_code) + " " +
                       String(close->reply_text);
            }
            return "unexpected broker method";
    }
    return "unknown reply";
}

// Owns the storage an amqp_table_t points into while a publish is encoded.
struct EncodedTable {
    std::vector<amqp_table_entry_t> entries;
    amqp_table_t table{0, nullptr};

    explicit EncodedTable(const HeaderTable& headers) {
        entries.reserve(headers.size());
        for (const auto& [name, value] : headers) {
            amqp_table_entry_t entry{};
            entry.key = Bytes(name);
            if (const auto* s = std::get_if<std::string>(&value)) {
                entry.value.kind = AMQP_FIELD_KIND_UTF8;  // a long string ('S'), which .NET reads as byte[]
                entry.value.value.bytes = Bytes(*s);
            } else if (const auto* i32 = std::get_if<std::int32_t>(&value)) {
                entry.value.kind = AMQP_FIELD_KIND_I32;
                entry.value.value.i32 = *i32;
            } else if (const auto* i64 = std::get_if<std::int64_t>(&value)) {
                entry.value.kind = AMQP_FIELD_KIND_I64;
                entry.value.value.i64 = *i64;
            } else {
                entry.value.kind = AMQP_FIELD_KIND_BOOLEAN;
                entry.value.value.boolean = std::get<bool>(value);
            }
            entries.push_back(entry);
        }
        table.num_entries = static_cast<int>(entries.size());
        table.entries = entries.empty() ? nullptr : entries.data();
    }
};

HeaderTable DecodeTable(const amqp_table_t& table) {
    HeaderTable headers;
    for (int i = 0; i < table.num_entries; ++i) {
        const auto& entry = table.entries[i];
        const std::string key = String(entry.key);
        const auto& v = entry.value;
        switch (v.kind) {
            case AMQP_FIELD_KIND_UTF8:
            case AMQP_FIELD_KIND_BYTES:
                headers[key] = String(v.value.bytes);
                break;
            case AMQP_FIELD_KIND_BOOLEAN:
                headers[key] = v.value.boolean != 0;
                break;
            case AMQP_FIELD_KIND_I8:
                headers[key] = static_cast<std::int32_t>(v.value.i8);
                break;
            case AMQP_FIELD_KIND_U8:
                headers[key] = static_cast<std::int32_t>(v.value.u8);
                break;
            case AMQP_FIELD_KIND_I16:
                headers[key] = static_cast<std::int32_t>(v.value.i16);
                break;
            case AMQP_FIELD_KIND_U16:
                headers[key] = static_cast<std::int32_t>(v.value.u16);
                break;
            case AMQP_FIELD_KIND_I32:
                headers[key] = v.value.i32;
                break;
            case AMQP_FIELD_KIND_U32:
                headers[key] = static_cast<std::int64_t>(v.value.u32);
                break;
            case AMQP_FIELD_KIND_I64:
                headers[key] = v.value.i64;
                break;
            case AMQP_FIELD_KIND_U64:
            case AMQP_FIELD_KIND_TIMESTAMP:
                headers[key] = static_cast<std::int64_t>(v.value.u64);
                break;
            default:
                break;  // arrays, tables, floats and decimals are not used by MassTransit's headers
        }
    }
    return headers;
}

MessageProperties DecodeProperties(const amqp_basic_properties_t& p) {
    MessageProperties properties;
    properties.delivery_mode = 1;
    if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) properties.content_type = String(p.content_type);
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) properties.message_id = String(p.message_id);
    if (p._flags & AMQP_BASIC_CORRELATION_ID_FLAG) properties.correlation_id = String(p.correlation_id);
    if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) properties.delivery_mode = p.delivery_mode;
    if (p._flags & AMQP_BASIC_EXPIRATION_FLAG) properties.expiration = String(p.expiration);
    if (p._flags & AMQP_BASIC_PRIORITY_FLAG) properties.priority = p.priority;
    if (p._flags & AMQP_BASIC_HEADERS_FLAG) properties.headers = DecodeTable(p.headers);
    return properties;
}

}  // namespace

AckPlan PlanAcks(const std::set<std::uint64_t>& unsettled, std::vector<std::uint64_t> acks) {
    std::sort(acks.begin(), acks.end());
    acks.erase(std::unique(acks.begin(), acks.end()), acks.end());
    std::size_t run = 0;
    for (auto it = unsettled.begin(); run < acks.size() && it != unsettled.end() && *it == acks[run]; ++it) ++run;
    AckPlan plan;
    if (run < 2) run = 0;  // a multiple-ack of one delivery is just an ack
    if (run > 0) plan.multiple_up_to = acks[run - 1];
    plan.single.assign(acks.begin() + static_cast<std::ptrdiff_t>(run), acks.end());
    return plan;
}

struct RabbitMqTransport::Connection {
    amqp_connection_state_t state = amqp_new_connection();
    ~Connection() { amqp_destroy_connection(state); }
};

RabbitMqTransport::RabbitMqTransport(EventLoop& loop, RabbitMqSettings settings, std::string connection_name)
    : loop_(loop),
      settings_(std::move(settings)),
      connection_name_(std::move(connection_name)),
      flush_at_turn_end_(loop, [this] { FlushOutput(); }) {}

RabbitMqTransport::~RabbitMqTransport() {
    *alive_ = false;
    Close();
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
    closing_ = false;
    Status status = Connect();
    if (!status.ok()) {
        spdlog::warn("RabbitMQ {}:{} not reachable ({}); retrying in the background", settings_.host, settings_.port,
                     status.message());
        ScheduleReconnect();
    }
    return status;
}

Status RabbitMqTransport::Connect() {
    if (settings_.username.empty())
        return Status::InvalidArgument("RabbitMQ.Username is not set (appsettings or RabbitMQ__Username)");
    auto connection = std::make_unique<Connection>();
    amqp_socket_t* socket = amqp_tcp_socket_new(connection->state);
    if (!socket) return Status::Internal("cannot create a TCP socket");
    // The timeout bounds the TCP connect, the login and each later RPC (declare, consume, cancel,
    // close). Heartbeats end a silent wait too, but only when they are on.
    timeval timeout{settings_.connection_timeout_seconds, 0};
    amqp_set_handshake_timeout(connection->state, &timeout);
    amqp_set_rpc_timeout(connection->state, &timeout);
    if (int rc = amqp_socket_open_noblock(socket, settings_.host.c_str(), settings_.port, &timeout);
        rc != AMQP_STATUS_OK)
        return Status::Unavailable(std::string("cannot connect: ") + amqp_error_string2(rc));

    amqp_table_entry_t property{};
    property.key = amqp_cstring_bytes("connection_name");
    property.value.kind = AMQP_FIELD_KIND_UTF8;
    property.value.value.bytes = Bytes(connection_name_);
    amqp_table_t client_properties{1, &property};
    amqp_rpc_reply_t reply = amqp_login_with_properties(
        connection->state, settings_.virtual_host.c_str(), 0, 131072, settings_.heartbeat_seconds, &client_properties,
        AMQP_SASL_METHOD_PLAIN, settings_.username.c_str(), settings_.password.c_str());
    if (reply.reply_type != AMQP_RESPONSE_NORMAL) return Status::Unavailable("login failed: " + ReplyText(reply));
    for (const amqp_channel_t channel : {kConsumeChannel, kPublishChannel}) {
        amqp_channel_open(connection->state, channel);
        if (reply = amqp_get_rpc_reply(connection->state); reply.reply_type != AMQP_RESPONSE_NORMAL)
            return Status::Unavailable("channel.open failed: " + ReplyText(reply));
    }
    amqp_confirm_select(connection->state, kPublishChannel);
    if (reply = amqp_get_rpc_reply(connection->state); reply.reply_type != AMQP_RESPONSE_NORMAL)
        return Status::Unavailable("confirm.select failed: " + ReplyText(reply));

    connection_ = std::move(connection);
    scratch_.assign(static_cast<std::size_t>(std::max(amqp_get_frame_max(connection_->state), 4096)), 0);
    next_publish_tag_ = 1;
    ++generation_;
    connected_ = true;
    for (const auto& topology : topology_) {
        if (Status status = DeclareNow(topology); !status.ok()) {
            ConnectionLost(status.message());
            return status;
        }
    }
    for (auto& [id, consumer] : consumers_) {
        if (Status status = StartConsumer(consumer); !status.ok()) {
            ConnectionLost(status.message());
            return status;
        }
    }
    const int fd = amqp_get_sockfd(connection_->state);
    poll_ = std::make_unique<PollWatcher>(loop_, fd, [this](int status) {
        if (status < 0) {
            ConnectionLost(std::string("socket error: ") + uv_strerror(status));
            return;
        }
        OnReadable();
    });
    if (settings_.heartbeat_seconds > 0) {
        heartbeat_timer_ = std::make_unique<Timer>(loop_);
        const auto period = std::chrono::milliseconds(settings_.heartbeat_seconds * 1000 / 2);
        heartbeat_timer_->Start(
            period, [this] { OnReadable(); }, period);
    }
    reconnect_attempts_ = 0;
    spdlog::info("connected to RabbitMQ at {}:{} vhost '{}' as {}", settings_.host, settings_.port,
                 settings_.virtual_host, connection_name_);
    // Frames may already be buffered from the RPCs above.
    OnReadable();
    return Status::Ok();
}

Status RabbitMqTransport::DeclareNow(const Topology& topology) {
    if (!FlushOutput()) return Status::Unavailable("connection lost");
    amqp_connection_state_t state = connection_->state;
    auto check = [&](const std::string& what) { return RpcStatus(StatusCode::kPreconditionFailed, what); };
    // MassTransit's order: queues, exchanges, queue bindings, exchange bindings.
    for (const auto& queue : topology.queues) {
        amqp_queue_declare(state, kConsumeChannel, Bytes(queue.name), 0, queue.durable, queue.exclusive,
                           queue.auto_delete, amqp_empty_table);
        if (Status s = check("queue.declare " + queue.name); !s.ok()) return s;
    }
    for (const auto& exchange : topology.exchanges) {
        amqp_exchange_declare(state, kConsumeChannel, Bytes(exchange.name), Bytes(exchange.type), 0, exchange.durable,
                              exchange.auto_delete, 0, amqp_empty_table);
        if (Status s = check("exchange.declare " + exchange.name); !s.ok()) return s;
    }
    for (const auto& binding : topology.queue_bindings) {
        amqp_queue_bind(state, kConsumeChannel, Bytes(binding.queue), Bytes(binding.exchange), amqp_cstring_bytes(""),
                        amqp_empty_table);
        if (Status s = check("queue.bind " + binding.exchange + " -> " + binding.queue); !s.ok()) return s;
    }
    for (const auto& binding : topology.exchange_bindings) {
        amqp_exchange_bind(state, kConsumeChannel, Bytes(binding.destination), Bytes(binding.source),
                           amqp_cstring_bytes(""), amqp_empty_table);
        if (Status s = check("exchange.bind " + binding.source + " -> " + binding.destination); !s.ok()) return s;
    }
    return Status::Ok();
}

Status RabbitMqTransport::Declare(const Topology& topology) {
    if (connected_) {
        Status status = DeclareNow(topology);
        if (!status.ok()) {
            // A failed declaration closes the channel: start over on a fresh connection.
            spdlog::error("RabbitMQ topology: {}", status.message());
            ConnectionLost(status.message());
            return status;
        }
    }
    topology_.push_back(topology);
    return Status::Ok();
}

Status RabbitMqTransport::StartConsumer(ConsumerEntry& consumer) {
    if (!FlushOutput()) return Status::Unavailable("connection lost");
    amqp_connection_state_t state = connection_->state;
    amqp_basic_qos(state, kConsumeChannel, 0, consumer.prefetch, 0);
    if (Status status = RpcStatus(StatusCode::kUnavailable, "basic.qos failed"); !status.ok()) return status;
    auto* ok = amqp_basic_consume(state, kConsumeChannel, Bytes(consumer.queue), amqp_empty_bytes, 0, /*no_ack=*/0, 0,
                                  amqp_empty_table);
    const std::string what = "basic.consume " + consumer.queue + " failed";
    if (Status status = RpcStatus(StatusCode::kUnavailable, what); !status.ok()) return status;
    if (!ok) return Status::Unavailable(what);
    consumer.tag = String(ok->consumer_tag);
    return Status::Ok();
}

ConsumerId RabbitMqTransport::Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) {
    const ConsumerId id = next_consumer_id_++;
    auto& consumer = consumers_[id] = ConsumerEntry{queue, prefetch, std::move(handler), {}};
    if (connected_)
        if (Status status = StartConsumer(consumer); !status.ok()) ConnectionLost(status.message());
    return id;
}

void RabbitMqTransport::Cancel(ConsumerId id) {
    auto it = consumers_.find(id);
    if (it == consumers_.end()) return;
    Status status = Status::Ok();
    if (connected_ && !it->second.tag.empty() && FlushOutput()) {
        amqp_basic_cancel(connection_->state, kConsumeChannel, Bytes(it->second.tag));
        status = RpcStatus(StatusCode::kUnavailable, "basic.cancel failed");
    }
    consumers_.erase(it);
    // A failed cancel leaves no usable channel (the broker closed it, or the RPC timed out and
    // rabbitmq-c closed the connection): the other consumers start again on a fresh connection.
    if (!status.ok()) ConnectionLost(status.message());
}

void RabbitMqTransport::Publish(const std::string& exchange, TransportMessage message, Completion confirmed) {
    if (!connected_) {
        if (confirmed)
            loop_.Post([alive = std::weak_ptr<bool>(alive_), confirmed = std::move(confirmed)] {
                if (!alive.expired()) confirmed(Status::Unavailable("not connected to RabbitMQ"));
            });
        return;
    }
    const auto& p = message.properties;
    amqp_basic_properties_t properties{};
    properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    properties.delivery_mode = p.delivery_mode;
    if (!p.content_type.empty()) {
        properties._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        properties.content_type = Bytes(p.content_type);
    }
    if (!p.message_id.empty()) {
        properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        properties.message_id = Bytes(p.message_id);
    }
    if (!p.correlation_id.empty()) {
        properties._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        properties.correlation_id = Bytes(p.correlation_id);
    }
    if (!p.expiration.empty()) {
        properties._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        properties.expiration = Bytes(p.expiration);
    }
    if (p.priority) {
        properties._flags |= AMQP_BASIC_PRIORITY_FLAG;
        properties.priority = *p.priority;
    }
    EncodedTable headers(p.headers);
    if (!p.headers.empty()) {
        properties._flags |= AMQP_BASIC_HEADERS_FLAG;
        properties.headers = headers.table;
    }

    // basic.publish, then the content header, then the body in frames of at most frame_max.
    const std::size_t mark = output_.size();
    amqp_basic_publish_t publish{};
    publish.exchange = Bytes(exchange);
    publish.routing_key = Bytes(message.routing_key);
    AppendMethod(kPublishChannel, AMQP_BASIC_PUBLISH_METHOD, &publish);
    const int encoded =
        amqp_encode_properties(AMQP_BASIC_CLASS, &properties, amqp_bytes_t{scratch_.size(), scratch_.data()});
    if (encoded < 0) {
        if (confirmed)
            loop_.Post([alive = std::weak_ptr<bool>(alive_), confirmed = std::move(confirmed)] {
                if (!alive.expired()) confirmed(Status::InvalidArgument("the message properties are too large"));
            });
        output_.resize(mark);
        return;
    }
    PutFrameStart(output_, AMQP_FRAME_HEADER, kPublishChannel, 12 + static_cast<std::size_t>(encoded));
    PutU16(output_, AMQP_BASIC_CLASS);
    PutU16(output_, 0);  // weight
    PutU64(output_, message.body.size());
    output_.append(scratch_.data(), static_cast<std::size_t>(encoded));
    output_.push_back(static_cast<char>(AMQP_FRAME_END));
    const std::size_t max_fragment = scratch_.size() - kFrameOverhead;
    for (std::size_t offset = 0; offset < message.body.size(); offset += max_fragment) {
        const std::size_t length = std::min(max_fragment, message.body.size() - offset);
        PutFrameStart(output_, AMQP_FRAME_BODY, kPublishChannel, length);
        output_.append(message.body, offset, length);
        output_.push_back(static_cast<char>(AMQP_FRAME_END));
    }
    const std::uint64_t tag = next_publish_tag_++;
    pending_confirms_.emplace(tag, confirmed ? std::move(confirmed) : Completion([](const Status&) {}));
    if (output_.size() >= kFlushThreshold)
        FlushOutput();
    else
        flush_at_turn_end_.Request();
}

void RabbitMqTransport::AppendMethod(std::uint16_t channel, std::uint32_t method_id, void* arguments) {
    const int encoded = amqp_encode_method(method_id, arguments, amqp_bytes_t{scratch_.size(), scratch_.data()});
    // Our methods (publish, ack, nack) are a few hundred bytes at most; frame_max is at least 4 KiB.
    if (encoded < 0) throw std::logic_error("cannot encode AMQP method " + std::to_string(method_id));
    PutFrameStart(output_, AMQP_FRAME_METHOD, channel, 4 + static_cast<std::size_t>(encoded));
    PutU32(output_, method_id);
    output_.append(scratch_.data(), static_cast<std::size_t>(encoded));
    output_.push_back(static_cast<char>(AMQP_FRAME_END));
}

bool RabbitMqTransport::FlushOutput() {
    if (!connected_) return false;
    if (!acks_.empty()) {
        const AckPlan plan = PlanAcks(unsettled_, std::move(acks_));
        acks_.clear();
        if (plan.multiple_up_to) {
            amqp_basic_ack_t ack{plan.multiple_up_to, 1};
            AppendMethod(kConsumeChannel, AMQP_BASIC_ACK_METHOD, &ack);
            unsettled_.erase(unsettled_.begin(), unsettled_.upper_bound(plan.multiple_up_to));
        }
        for (auto tag : plan.single) {
            amqp_basic_ack_t ack{tag, 0};
            AppendMethod(kConsumeChannel, AMQP_BASIC_ACK_METHOD, &ack);
            unsettled_.erase(tag);
        }
    }
    if (output_.empty()) return true;
    const int fd = amqp_get_sockfd(connection_->state);
    std::size_t written = 0;
    while (written < output_.size()) {
        const ssize_t n = ::send(fd, output_.data() + written, output_.size() - written, MSG_NOSIGNAL);
        if (n > 0) {
            written += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // The broker is not reading (flow control, a slow disk): wait, as a blocking client would,
            // but not forever. A partial frame must never be left behind for rabbitmq-c to write after.
            pollfd writable{fd, POLLOUT, 0};
            const int ready = ::poll(&writable, 1, settings_.connection_timeout_seconds * 1000);
            if (ready > 0) continue;
            ConnectionLost(ready == 0 ? "the broker stopped reading (write timed out)" : "poll failed");
            return false;
        }
        ConnectionLost(std::string("write failed: ") + (n < 0 ? std::strerror(errno) : "connection closed"));
        return false;
    }
    output_.clear();
    return true;
}

void RabbitMqTransport::Ack(const Delivery& delivery) {
    if (!connected_ || delivery.connection_generation != generation_) return;  // the broker will redeliver it
    acks_.push_back(delivery.delivery_tag);
    flush_at_turn_end_.Request();
}

void RabbitMqTransport::Nack(const Delivery& delivery, bool requeue) {
    if (!connected_ || delivery.connection_generation != generation_) return;
    unsettled_.erase(delivery.delivery_tag);
    amqp_basic_nack_t nack{delivery.delivery_tag, 0, requeue ? amqp_boolean_t{1} : amqp_boolean_t{0}};
    AppendMethod(kConsumeChannel, AMQP_BASIC_NACK_METHOD, &nack);
    flush_at_turn_end_.Request();
}

void RabbitMqTransport::Confirm(std::uint64_t tag, bool multiple, bool ok) {
    std::vector<Completion> done;
    if (multiple) {
        auto end = pending_confirms_.upper_bound(tag);
        for (auto it = pending_confirms_.begin(); it != end; ++it) done.push_back(std::move(it->second));
        pending_confirms_.erase(pending_confirms_.begin(), end);
    } else if (auto it = pending_confirms_.find(tag); it != pending_confirms_.end()) {
        done.push_back(std::move(it->second));
        pending_confirms_.erase(it);
    }
    const Status status = ok ? Status::Ok() : Status::Internal("the broker rejected the message (basic.nack)");
    for (auto& completion : done) completion(status);
}

Status RabbitMqTransport::RpcStatus(StatusCode code, const std::string& what) {
    amqp_connection_state_t state = connection_->state;
    const amqp_rpc_reply_t reply = amqp_get_rpc_reply(state);
    const bool buffered = amqp_frames_enqueued(state) || amqp_data_in_buffer(state);
    if (buffered && !buffered_read_posted_) {
        // Not now: the caller may be a handler that OnReadable itself is running.
        buffered_read_posted_ = true;
        loop_.Post([this, alive = std::weak_ptr<bool>(alive_), generation = generation_] {
            if (alive.expired()) return;
            buffered_read_posted_ = false;
            if (generation == generation_) OnReadable();
        });
    }
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return Status::Ok();
    return Status(code, what + ": " + ReplyText(reply));
}

void RabbitMqTransport::OnReadable() {
    const std::uint64_t generation = generation_;
    while (connected_ && generation == generation_) {
        amqp_connection_state_t state = connection_->state;
        amqp_frame_t frame;
        timeval no_wait{0, 0};
        const int rc = amqp_simple_wait_frame_noblock(state, &frame, &no_wait);
        if (rc == AMQP_STATUS_TIMEOUT) break;
        if (rc != AMQP_STATUS_OK) {
            ConnectionLost(amqp_error_string2(rc));
            return;
        }
        if (frame.frame_type != AMQP_FRAME_METHOD) continue;
        const auto method_id = frame.payload.method.id;

        if (method_id == AMQP_BASIC_DELIVER_METHOD || method_id == AMQP_BASIC_RETURN_METHOD) {
            Delivery delivery;
            std::string consumer_tag;
            if (method_id == AMQP_BASIC_DELIVER_METHOD) {
                auto* deliver = static_cast<amqp_basic_deliver_t*>(frame.payload.method.decoded);
                delivery.delivery_tag = deliver->delivery_tag;
                unsettled_.insert(deliver->delivery_tag);
                delivery.redelivered = deliver->redelivered != 0;
                delivery.exchange = String(deliver->exchange);
                delivery.message.routing_key = String(deliver->routing_key);
                consumer_tag = String(deliver->consumer_tag);
            }
            // The content header and body frames follow the method directly.
            timeval content_wait{30, 0};
            amqp_frame_t header;
            if (int hrc = amqp_simple_wait_frame_noblock(state, &header, &content_wait);
                hrc != AMQP_STATUS_OK || header.frame_type != AMQP_FRAME_HEADER) {
                ConnectionLost("incomplete delivery (no content header)");
                return;
            }
            const auto body_size = header.payload.properties.body_size;
            delivery.message.properties =
                DecodeProperties(*static_cast<amqp_basic_properties_t*>(header.payload.properties.decoded));
            delivery.message.body.reserve(body_size);
            while (delivery.message.body.size() < body_size) {
                amqp_frame_t body;
                if (int brc = amqp_simple_wait_frame_noblock(state, &body, &content_wait);
                    brc != AMQP_STATUS_OK || body.frame_type != AMQP_FRAME_BODY) {
                    ConnectionLost("incomplete delivery (body)");
                    return;
                }
                delivery.message.body.append(static_cast<const char*>(body.payload.body_fragment.bytes),
                                             body.payload.body_fragment.len);
            }
            amqp_maybe_release_buffers_on_channel(state, frame.channel);
            if (method_id == AMQP_BASIC_RETURN_METHOD) {
                spdlog::warn("RabbitMQ returned an unroutable message {}", delivery.message.properties.message_id);
                continue;
            }
            delivery.connection_generation = generation_;
            for (auto& [id, consumer] : consumers_) {
                if (consumer.tag != consumer_tag) continue;
                delivery.queue = consumer.queue;
                auto handler = consumer.handler;
                handler(std::move(delivery));
                break;
            }
            continue;
        }
        HandleMethod(frame.channel, method_id, frame.payload.method.decoded);
        if (connected_ && generation == generation_) amqp_maybe_release_buffers(state);
    }
}

void RabbitMqTransport::HandleMethod(std::uint16_t channel, std::uint32_t method_id, void* decoded) {
    switch (method_id) {
        case AMQP_BASIC_ACK_METHOD: {
            auto* ack = static_cast<amqp_basic_ack_t*>(decoded);
            Confirm(ack->delivery_tag, ack->multiple != 0, true);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            auto* nack = static_cast<amqp_basic_nack_t*>(decoded);
            Confirm(nack->delivery_tag, nack->multiple != 0, false);
            break;
        }
        case AMQP_BASIC_CANCEL_METHOD:
            ConnectionLost("the broker cancelled a consumer (was its queue deleted?)");
            break;
        case AMQP_CHANNEL_CLOSE_METHOD: {
            auto* close = static_cast<amqp_channel_close_t*>(decoded);
            const std::string reason = "channel " + std::to_string(channel) +
                                       " closed by the broker: " + std::to_string(close->reply_code) + " " +
                                       String(close->reply_text);
            amqp_channel_close_ok_t close_ok{};
            amqp_send_method(connection_->state, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
            ConnectionLost(reason);
            break;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            auto* close = static_cast<amqp_connection_close_t*>(decoded);
            const std::string reason = "connection closed by the broker: " + std::to_string(close->reply_code) + " " +
                                       String(close->reply_text);
            amqp_connection_close_ok_t close_ok{};
            amqp_send_method(connection_->state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
            ConnectionLost(reason);
            break;
        }
        default:
            break;
    }
}

void RabbitMqTransport::ConnectionLost(const std::string& reason) {
    if (!connected_ && !connection_) return;
    const bool was_connected = connected_;
    connected_ = false;
    poll_.reset();
    heartbeat_timer_.reset();
    connection_.reset();
    for (auto& [id, consumer] : consumers_) consumer.tag.clear();
    output_.clear();
    acks_.clear();
    unsettled_.clear();
    // Publishes that were not confirmed may or may not have reached the broker: report failure so the
    // caller keeps the message (outbox) or its delivery (nack -> redelivery).
    auto unconfirmed = std::move(pending_confirms_);
    pending_confirms_.clear();
    if (!unconfirmed.empty())
        loop_.Post([alive = std::weak_ptr<bool>(alive_), unconfirmed = std::move(unconfirmed), reason]() mutable {
            if (alive.expired()) return;
            for (auto& [tag, completion] : unconfirmed) completion(Status::Unavailable("connection lost: " + reason));
        });
    if (closing_) return;
    if (was_connected) spdlog::error("RabbitMQ connection lost: {}", reason);
    ScheduleReconnect();
}

void RabbitMqTransport::ScheduleReconnect() {
    if (closing_) return;
    const auto delay = std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(100) * (1 << std::min(reconnect_attempts_, 7)), std::chrono::milliseconds(10000));
    ++reconnect_attempts_;
    if (!reconnect_timer_) reconnect_timer_ = std::make_unique<Timer>(loop_);
    reconnect_timer_->Start(delay, [this] {
        if (connected_ || closing_) return;
        Status status = Connect();
        if (!status.ok()) {
            spdlog::warn("reconnecting to RabbitMQ failed ({}); attempt {}", status.message(), reconnect_attempts_);
            ScheduleReconnect();
        }
    });
}

void RabbitMqTransport::Close() {
    closing_ = true;
    reconnect_timer_.reset();
    if (connected_ && connection_ && FlushOutput()) {
        amqp_channel_close(connection_->state, kPublishChannel, AMQP_REPLY_SUCCESS);
        amqp_channel_close(connection_->state, kConsumeChannel, AMQP_REPLY_SUCCESS);
        amqp_connection_close(connection_->state, AMQP_REPLY_SUCCESS);
    }
    ConnectionLost("closed");
}

}  // namespace messaging
