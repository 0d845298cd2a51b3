#include "Broker/BrokerSupport.h"

#include <doctest/doctest.h>

#include "RabbitMq/FieldTable.h"
#include "Support/Waiting.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <atomic>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <thread>

extern char** environ;

using messaging::AmqpBytes;
using messaging::AmqpString;

namespace broker_test {
namespace {

using contracts::Json;

int RequiredPort(const char* name) {
    const char* value = std::getenv(name);
    if (!value || !*value)
        throw std::runtime_error(
            std::string(name) +
            " is not set: the broker tests need the private RabbitMQ node that scripts/test.sh starts "
            "(run `bash scripts/test.sh`)");
    return std::atoi(value);
}

amqp_connection_state_t State(void* state) {
    if (!state) throw std::runtime_error("raw AMQP client: no connection (reconnecting after a refusal failed)");
    return static_cast<amqp_connection_state_t>(state);
}

// What a failed reply says, for an exception's message: the library's error, or the code and text of
// the broker's channel.close or connection.close.
std::string DescribeReply(const amqp_rpc_reply_t& reply) {
    auto close_text = [](const char* what, std::uint16_t code, amqp_bytes_t text) {
        return std::string(what) + " " + std::to_string(code) + " " + AmqpString(text);
    };
    switch (reply.reply_type) {
        case AMQP_RESPONSE_NORMAL:
            return "a normal reply";
        case AMQP_RESPONSE_NONE:
            return "no reply";
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            return std::string("library error: ") + amqp_error_string2(reply.library_error);
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
                const auto* close = static_cast<amqp_connection_close_t*>(reply.reply.decoded);
                return close_text("connection.close", close->reply_code, close->reply_text);
            }
            if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                const auto* close = static_cast<amqp_channel_close_t*>(reply.reply.decoded);
                return close_text("channel.close", close->reply_code, close->reply_text);
            }
            return "server method " + std::to_string(reply.reply.id);
    }
    return "reply type " + std::to_string(static_cast<int>(reply.reply_type));
}

void CheckReply(amqp_connection_state_t state, const std::string& what) {
    const amqp_rpc_reply_t reply = amqp_get_rpc_reply(state);
    if (reply.reply_type != AMQP_RESPONSE_NORMAL)
        throw std::runtime_error("raw AMQP client: " + what + " failed: " + DescribeReply(reply));
}

// A new connection to the vhost, with channel 1 open in confirm mode.
amqp_connection_state_t OpenConnection(const std::string& vhost) {
    auto state = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(state);
    if (amqp_socket_open(socket, "127.0.0.1", BrokerEnvironment::Get().amqp_port) != AMQP_STATUS_OK) {
        amqp_destroy_connection(state);
        throw std::runtime_error("raw AMQP client: cannot connect");
    }
    if (amqp_login(state, vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
        AMQP_RESPONSE_NORMAL) {
        amqp_destroy_connection(state);
        throw std::runtime_error("raw AMQP client: login failed");
    }
    amqp_channel_open(state, 1);
    CheckReply(state, "channel.open");
    amqp_confirm_select(state, 1);
    CheckReply(state, "confirm.select");
    return state;
}

}  // namespace

const BrokerEnvironment& BrokerEnvironment::Get() {
    static const BrokerEnvironment environment = [] {
        BrokerEnvironment e;
        e.amqp_port = RequiredPort("SAGA_TEST_AMQP_PORT");
        e.management_port = RequiredPort("SAGA_TEST_MANAGEMENT_PORT");
        const char* dir = std::getenv("SAGA_BROKER_DIR");
        e.broker_dir = dir ? dir : "";
        return e;
    }();
    return environment;
}

std::string SourceDir() {
    return SAGA_SOURCE_DIR;
}

int FreePort() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
        ::close(fd);
        throw std::runtime_error("no free port");
    }
    ::close(fd);
    return ntohs(address.sin_port);
}

int PostOrder(httplib::Client& client, const std::string& id) {
    auto result = client.Post("/order", R"({"orderId":")" + id + R"(","customerNumber":"C","totalAmount":"10.00"})",
                              "application/json");
    return result ? result->status : 0;
}

std::string OrderStatus(httplib::Client& client, const std::string& id) {
    auto result = client.Get(("/order/" + id).c_str());
    if (!result || result->status != 200) return "<" + std::to_string(result ? result->status : 0) + ">";
    return contracts::Json::parse(result->body).value("status", "");
}

std::string Encode(const std::string& text) {
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            char buffer[4];
            std::snprintf(buffer, sizeof buffer, "%%%02X", c);
            out += buffer;
        }
    }
    return out;
}

ManagementApi::ManagementApi() : client_("127.0.0.1", BrokerEnvironment::Get().management_port) {
    client_.set_basic_auth("guest", "guest");
    client_.set_read_timeout(30, 0);
}

Json ManagementApi::Get(const std::string& path) {
    auto result = client_.Get(("/api/" + path).c_str());
    if (!result || result->status != 200)
        throw std::runtime_error("management GET " + path +
                                 " failed: " + (result ? std::to_string(result->status) : "no answer"));
    return Json::parse(result->body);
}

void ManagementApi::Put(const std::string& path, const Json& body) {
    auto result = client_.Put(("/api/" + path).c_str(), body.dump(), "application/json");
    if (!result || result->status >= 300) throw std::runtime_error("management PUT " + path + " failed");
}

int ManagementApi::Delete(const std::string& path) {
    auto result = client_.Delete(("/api/" + path).c_str());
    return result ? result->status : 0;
}

ScopedVhost::ScopedVhost() {
    std::random_device device;
    name_ = "test-" + std::to_string(device() % 1000000000);
    ManagementApi api;
    api.Put("vhosts/" + Encode(name_), Json::object());
    api.Put("permissions/" + Encode(name_) + "/guest", Json{{"configure", ".*"}, {"write", ".*"}, {"read", ".*"}});
}

ScopedVhost::~ScopedVhost() {
    try {
        ManagementApi().Delete("vhosts/" + Encode(name_));
    } catch (...) {
    }
}

messaging::RabbitMqSettings ScopedVhost::Settings() const {
    messaging::RabbitMqSettings settings;
    settings.host = "127.0.0.1";
    settings.port = BrokerEnvironment::Get().amqp_port;
    settings.virtual_host = name_;
    settings.username = "guest";
    settings.password = "guest";
    settings.heartbeat_seconds = 5;
    return settings;
}

std::vector<std::string> ScopedVhost::SettingsEnvironment() const {
    // A worker's admin listener on a free port of its own, so that workers run side by side.
    return {"RabbitMQ__Host=127.0.0.1",
            "RabbitMQ__Port=" + std::to_string(BrokerEnvironment::Get().amqp_port),
            "RabbitMQ__VirtualHost=" + name_,
            "RabbitMQ__Username=guest",
            "RabbitMQ__Password=guest",
            "Admin__Host=127.0.0.1",
            "Admin__Port=0"};
}

RawAmqpClient::RawAmqpClient(const std::string& vhost) : vhost_(vhost), state_(OpenConnection(vhost)) {}

RawAmqpClient::~RawAmqpClient() {
    if (!state_) return;  // a reconnect failed
    amqp_channel_close(State(state_), 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(State(state_), AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(State(state_));
}

void RawAmqpClient::Tap(const std::string& queue, const std::vector<std::string>& exchanges) {
    auto state = State(state_);
    amqp_queue_declare(state, 1, AmqpBytes(queue), 0, 1, 0, 0, amqp_empty_table);
    CheckReply(state, "queue.declare");
    for (const auto& exchange : exchanges) {
        amqp_exchange_declare(state, 1, AmqpBytes(exchange), amqp_cstring_bytes("fanout"), 0, 1, 0, 0,
                              amqp_empty_table);
        CheckReply(state, "exchange.declare " + exchange);
        amqp_queue_bind(state, 1, AmqpBytes(queue), AmqpBytes(exchange), amqp_empty_bytes, amqp_empty_table);
        CheckReply(state, "queue.bind");
    }
}

void RawAmqpClient::Publish(const std::string& exchange, const std::string& body,
                            const messaging::MessageProperties& p) {
    auto state = State(state_);
    amqp_basic_properties_t properties{};
    properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    properties.delivery_mode = p.delivery_mode;
    if (!p.content_type.empty()) {
        properties._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        properties.content_type = AmqpBytes(p.content_type);
    }
    if (!p.message_id.empty()) {
        properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        properties.message_id = AmqpBytes(p.message_id);
    }
    const int published =
        amqp_basic_publish(state, 1, AmqpBytes(exchange), amqp_empty_bytes, 0, 0, &properties, AmqpBytes(body));
    if (published != AMQP_STATUS_OK)
        throw std::runtime_error(std::string("raw AMQP client: publish failed: ") + amqp_error_string2(published));
    // Wait for the confirm.
    amqp_frame_t frame;
    const int waited = amqp_simple_wait_frame(state, &frame);
    if (waited != AMQP_STATUS_OK)
        throw std::runtime_error(std::string("raw AMQP client: waiting for the confirm failed: ") +
                                 amqp_error_string2(waited));
    if (frame.frame_type != AMQP_FRAME_METHOD || frame.payload.method.id != AMQP_BASIC_ACK_METHOD)
        throw std::runtime_error(
            "raw AMQP client: publish was not confirmed (frame type " + std::to_string(frame.frame_type) + ", method " +
            std::to_string(frame.frame_type == AMQP_FRAME_METHOD ? frame.payload.method.id : 0) + ")");
}

namespace {

RawMessage ToRawMessage(amqp_bytes_t exchange, amqp_bytes_t routing_key, const amqp_message_t& message) {
    RawMessage raw;
    raw.exchange = AmqpString(exchange);
    raw.routing_key = AmqpString(routing_key);
    raw.body = AmqpString(message.body);
    const auto& p = message.properties;
    raw.properties.delivery_mode = (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) ? p.delivery_mode : 0;
    if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) raw.properties.content_type = AmqpString(p.content_type);
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) raw.properties.message_id = AmqpString(p.message_id);
    if (p._flags & AMQP_BASIC_CORRELATION_ID_FLAG) raw.properties.correlation_id = AmqpString(p.correlation_id);
    if (p._flags & AMQP_BASIC_EXPIRATION_FLAG) raw.properties.expiration = AmqpString(p.expiration);
    if (!(p._flags & AMQP_BASIC_HEADERS_FLAG)) return raw;
    for (int i = 0; i < p.headers.num_entries; ++i) {
        const auto& entry = p.headers.entries[i];
        const std::string key = AmqpString(entry.key);
        switch (entry.value.kind) {
            case AMQP_FIELD_KIND_UTF8:
            case AMQP_FIELD_KIND_BYTES:
                raw.properties.headers[key] = AmqpString(entry.value.value.bytes);
                break;
            case AMQP_FIELD_KIND_I32:
                raw.properties.headers[key] = entry.value.value.i32;
                break;
            case AMQP_FIELD_KIND_I64:
                raw.properties.headers[key] = entry.value.value.i64;
                break;
            case AMQP_FIELD_KIND_BOOLEAN:
                raw.properties.headers[key] = entry.value.value.boolean != 0;
                break;
            default:
                raw.properties.headers[key] = std::string("<kind ") + static_cast<char>(entry.value.kind) + ">";
        }
    }
    return raw;
}

// After a refused call on channel 1: describes the refusal and opens again what the broker closed, the
// channel or, after an INTERNAL_ERROR, the whole connection (`connection` then holds the new one, or null
// when it could not be made). Any other connection error throws.
std::string RecoverFromRefusal(void*& connection, const std::string& vhost, const amqp_rpc_reply_t& reply) {
    const auto state = State(connection);
    const std::string refusal = DescribeReply(reply);
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t close_ok{};
        if (amqp_send_method(state, 1, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok) != AMQP_STATUS_OK)
            throw std::runtime_error("raw AMQP client: channel.close-ok failed after " + refusal);
        amqp_channel_open(state, 1);
        CheckReply(state, "channel.open");
        amqp_confirm_select(state, 1);
        CheckReply(state, "confirm.select");
        return refusal;
    }
    const bool internal_error =
        reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD &&
        static_cast<const amqp_connection_close_t*>(reply.reply.decoded)->reply_code == AMQP_INTERNAL_ERROR;
    if (!internal_error) throw std::runtime_error("raw AMQP client: the connection failed: " + refusal);
    amqp_connection_close_ok_t close_ok{};
    amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &close_ok);
    amqp_destroy_connection(state);
    connection = nullptr;
    connection = OpenConnection(vhost);
    return refusal;
}

}  // namespace

std::optional<RawMessage> RawAmqpClient::Get(const std::string& queue, std::chrono::milliseconds timeout) {
    auto state = State(state_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // What is in the queue already: basic.get. A queue the management API lists may not serve yet: a quorum
    // queue electing its leader makes the broker close the channel, and one whose Ra server is (re)starting
    // makes it close the whole connection with INTERNAL_ERROR ("noproc"). Either way the client opens what
    // was closed and asks again until the deadline.
    amqp_rpc_reply_t reply{};
    std::string refusal;
    const bool served = test_support::WaitFor(
        [&] {
            reply = amqp_basic_get(state, 1, AmqpBytes(queue), /*no_ack=*/1);
            if (reply.reply_type == AMQP_RESPONSE_NORMAL) return true;
            refusal = RecoverFromRefusal(state_, vhost_, reply);
            state = State(state_);
            return false;
        },
        timeout);
    if (!served) throw std::runtime_error("raw AMQP client: basic.get on " + queue + " failed: " + refusal);
    if (reply.reply.id == AMQP_BASIC_GET_OK_METHOD) {
        auto* ok = static_cast<amqp_basic_get_ok_t*>(reply.reply.decoded);
        const amqp_bytes_t exchange = amqp_bytes_malloc_dup(ok->exchange);
        const amqp_bytes_t routing_key = amqp_bytes_malloc_dup(ok->routing_key);
        amqp_message_t message;
        const amqp_rpc_reply_t read = amqp_read_message(state, 1, &message, 0);
        if (read.reply_type != AMQP_RESPONSE_NORMAL)
            throw std::runtime_error("raw AMQP client: reading the message failed: " + DescribeReply(read));
        RawMessage raw = ToRawMessage(exchange, routing_key, message);
        amqp_bytes_free(exchange);
        amqp_bytes_free(routing_key);
        amqp_destroy_message(&message);
        amqp_maybe_release_buffers(state);
        return raw;
    }
    const auto remaining =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (remaining <= std::chrono::milliseconds(0)) return std::nullopt;

    // Nothing yet: consume one message (prefetch 1), waiting on the socket until the deadline.
    amqp_basic_qos(state, 1, 0, 1, 0);
    CheckReply(state, "basic.qos");
    auto* consume_ok =
        amqp_basic_consume(state, 1, AmqpBytes(queue), amqp_empty_bytes, 0, /*no_ack=*/0, 0, amqp_empty_table);
    CheckReply(state, "basic.consume " + queue);
    const std::string tag = AmqpString(consume_ok->consumer_tag);
    timeval wait{static_cast<time_t>(remaining.count() / 1000),
                 static_cast<suseconds_t>(remaining.count() % 1000 * 1000)};
    amqp_envelope_t envelope;
    amqp_maybe_release_buffers(state);
    const amqp_rpc_reply_t consumed = amqp_consume_message(state, &envelope, &wait, 0);
    std::optional<RawMessage> result;
    if (consumed.reply_type == AMQP_RESPONSE_NORMAL) {
        result = ToRawMessage(envelope.exchange, envelope.routing_key, envelope.message);
        amqp_basic_ack(state, 1, envelope.delivery_tag, 0);
        amqp_destroy_envelope(&envelope);
    } else if (consumed.reply_type != AMQP_RESPONSE_LIBRARY_EXCEPTION ||
               consumed.library_error != AMQP_STATUS_TIMEOUT) {
        throw std::runtime_error("raw AMQP client: waiting for a message on " + queue +
                                 " failed: " + DescribeReply(consumed));
    }
    amqp_basic_cancel(state, 1, amqp_cstring_bytes(tag.c_str()));
    CheckReply(state, "basic.cancel " + queue);
    // A message the broker pushed just before the cancel goes back to the queue.
    while (amqp_frames_enqueued(state) || amqp_data_in_buffer(state)) {
        timeval now{0, 0};
        amqp_envelope_t late;
        if (amqp_consume_message(state, &late, &now, 0).reply_type != AMQP_RESPONSE_NORMAL) break;
        amqp_basic_reject(state, 1, late.delivery_tag, /*requeue=*/1);
        amqp_destroy_envelope(&late);
    }
    amqp_maybe_release_buffers(state);
    return result;
}

std::vector<RawMessage> RawAmqpClient::Drain(const std::string& queue) {
    std::vector<RawMessage> messages;
    while (auto message = Get(queue, std::chrono::milliseconds(0))) messages.push_back(std::move(*message));
    return messages;
}

BrokerSystem::BrokerSystem(const ScopedVhost& vhost, Options options) {
    loop().Invoke([&] {
        auto connect = [&](const char* name) -> messaging::Transport& {
            auto settings = vhost.Settings();
            if (options.queue_check_interval_ms != 0)
                settings.queue_check_interval_ms = options.queue_check_interval_ms;
            if (std::string(name) == "OrderService" && options.order_service_amqp_port != 0)
                settings.port = options.order_service_amqp_port;
            if (auto hosts = options.hosts.find(name); hosts != options.hosts.end()) settings.hosts = hosts->second;
            transports_.push_back(std::make_unique<messaging::RabbitMqTransport>(loop(), settings, name));
            if (auto status = transports_.back()->Start(); !status.ok()) throw std::runtime_error(status.message());
            return *transports_.back();
        };
        if (options.start_orders) {
            order_service::OrderSettings order_settings;
            order_settings.database.path = dir_.File("orders.db");
            order_settings.endpoint.retry = messaging::RetryPolicy::Immediate(5);
            order_settings.http.port = 0;
            order_settings.http.host = "127.0.0.1";
            order_settings.endpoint.queue_arguments = options.queue_arguments;
            order_ = std::make_unique<order_service::OrderServiceHost>(loop(), connect("OrderService"), order_settings);
            harness_.Observe(order_->bus());
            if (auto status = order_->Start(); !status.ok()) throw std::runtime_error(status.message());
        }
        if (options.start_inventory) {
            inventory_service::InventorySettings settings;
            settings.database.path = dir_.File("inventory.db");
            settings.endpoint.retry = options.worker_retry;
            settings.endpoint.queue_arguments = options.queue_arguments;
            inventory_ = std::make_unique<inventory_service::InventoryServiceHost>(loop(), connect("InventoryService"),
                                                                                   settings);
            harness_.Observe(inventory_->bus());
            if (auto status = inventory_->Start(); !status.ok()) throw std::runtime_error(status.message());
        }
        if (options.start_payment) {
            payment_service::PaymentSettings settings;
            settings.database.path = dir_.File("payments.db");
            settings.endpoint.retry = options.worker_retry;
            settings.endpoint.queue_arguments = options.queue_arguments;
            payment_ =
                std::make_unique<payment_service::PaymentServiceHost>(loop(), connect("PaymentService"), settings);
            harness_.Observe(payment_->bus());
            if (auto status = payment_->Start(); !status.ok()) throw std::runtime_error(status.message());
        }
    });
    // The transports connect in the background: the system is up once each has declared its
    // topology and started its consumers.
    const bool settled = !options.wait_until_settled || test_support::WaitFor(
                                                            [&] {
                                                                return loop().Invoke([&] {
                                                                    for (const auto& transport : transports_)
                                                                        if (!transport->IsSettled()) return false;
                                                                    return true;
                                                                });
                                                            },
                                                            std::chrono::seconds(20));
    if (!settled) throw std::runtime_error("the in-process services did not connect to the test broker in 20 s");
    if (options.start_http && order_) http_port_ = order_->StartHttp();
}

BrokerSystem::~BrokerSystem() {
    loop().Invoke([&] {
        order_.reset();
        inventory_.reset();
        payment_.reset();
        transports_.clear();
    });
}

std::optional<order_service::OrderRecord> BrokerSystem::Order(const std::string& id) {
    return loop().Invoke([&] { return order_->repository().FindOrder(contracts::OrderId::Parse(id).value()); });
}

bool BrokerSystem::WaitForStatus(const std::string& id, order_service::OrderStatus status,
                                 std::chrono::milliseconds timeout) {
    return harness_.WaitUntil(
        [&] {
            auto order = Order(id);
            return order && order->status == status;
        },
        timeout);
}

bool BrokerSystem::Connected() {
    return loop().Invoke([&] {
        for (auto& transport : transports_)
            if (!transport->IsConnected()) return false;
        return true;
    });
}

ChildProcess::ChildProcess(const std::string& program, const std::vector<std::string>& arguments,
                           const std::vector<std::string>& extra_environment, const std::string& log_path) {
    std::vector<std::string> args{program};
    args.insert(args.end(), arguments.begin(), arguments.end());
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.insert(env.end(), extra_environment.begin(), extra_environment.end());
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + program);
    std::promise<int> exit_code;
    exited_ = exit_code.get_future().share();
    waiter_ = std::thread([pid = pid_, exit_code = std::move(exit_code)]() mutable {
        int status = 0;
        ::waitpid(pid, &status, 0);
        exit_code.set_value(WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
    });
}

ChildProcess::~ChildProcess() {
    if (exited_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) ::kill(pid_, SIGKILL);
    waiter_.join();
}

void ChildProcess::Signal(int signal_number) {
    ::kill(pid_, signal_number);
}

std::optional<int> ChildProcess::Wait(std::chrono::milliseconds timeout) {
    if (exited_.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return exited_.get();
}

bool WaitForQueue(const ScopedVhost& vhost, const std::string& queue, std::chrono::milliseconds timeout) {
    ManagementApi api;
    return test_support::WaitFor(
        [&] {
            for (const auto& q : api.Get("queues/" + Encode(vhost.name())))
                if (q["name"] == queue) return true;
            return false;
        },
        timeout);
}

namespace {
// Runs `scripts/broker.sh COMMAND <the test node's dir> ARGUMENTS...` on the test node; throws with
// `what` when it fails.
void RunBrokerScript(const std::string& command, const std::vector<std::string>& arguments, const std::string& what) {
    const auto& environment = BrokerEnvironment::Get();
    if (environment.broker_dir.empty()) throw std::runtime_error("SAGA_BROKER_DIR is not set");
    std::string line = "bash '" + SourceDir() + "/scripts/broker.sh' " + command + " '" + environment.broker_dir + "'";
    for (const auto& argument : arguments) line += " '" + argument + "'";
    if (std::system(line.c_str()) != 0) throw std::runtime_error(what + " failed");
}
}  // namespace

void SetMemoryAlarm(bool raised) {
    RunBrokerScript("memory-alarm", {raised ? "on" : "off"}, "setting the memory alarm");
}

void SetQuorumMemberRunning(const ScopedVhost& vhost, const std::string& queue, bool running) {
    RunBrokerScript("quorum-member", {running ? "start" : "stop", vhost.name(), queue},
                    (running ? "starting " : "stopping ") + queue);
}

AmqpProxy::AmqpProxy() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listener_, 4) != 0 || ::pipe(wake_) != 0)
        throw std::runtime_error("AmqpProxy: cannot listen");
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { Run(); });
}

AmqpProxy::~AmqpProxy() {
    stop_ = true;
    [[maybe_unused]] auto written = ::write(wake_[1], "x", 1);
    thread_.join();
    ::close(listener_);
    ::close(wake_[0]);
    ::close(wake_[1]);
}

void AmqpProxy::HoldInsideNextDelivery() {
    armed_ = true;
}

void AmqpProxy::Release() {
    release_ = true;
    [[maybe_unused]] auto written = ::write(wake_[1], "x", 1);
}

void AmqpProxy::Run() {
    int client = -1;
    int broker = -1;
    std::string from_broker;  // bytes read from the broker and not yet passed on
    bool passed_deliver = false;
    std::size_t already_sent = 0;  // of the first frame in from_broker
    auto send_all = [](int fd, const char* data, std::size_t size) {
        while (size > 0) {
            const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
            if (n <= 0) return false;
            data += n;
            size -= static_cast<std::size_t>(n);
        }
        return true;
    };
    // Passes whole frames on, except while holding.
    auto pass_on = [&] {
        if (release_) {
            holding_ = false;
            armed_ = false;
            release_ = false;
        }
        if (holding_) return true;
        while (from_broker.size() >= 7) {
            const std::uint32_t size =
                (static_cast<std::uint8_t>(from_broker[3]) << 24) | (static_cast<std::uint8_t>(from_broker[4]) << 16) |
                (static_cast<std::uint8_t>(from_broker[5]) << 8) | static_cast<std::uint8_t>(from_broker[6]);
            if (passed_deliver) {
                // Three bytes of the frame after basic.deliver (its content header), then nothing.
                if (!send_all(client, from_broker.data(), 3)) return false;
                already_sent = 3;
                passed_deliver = false;
                holding_ = true;
                return true;
            }
            if (from_broker.size() < size + 8) break;
            const bool deliver = armed_ && from_broker[0] == 1 && size >= 4 &&
                                 from_broker.compare(7, 4, std::string("\x00\x3c\x00\x3c", 4)) == 0;
            if (!send_all(client, from_broker.data() + already_sent, size + 8 - already_sent)) return false;
            from_broker.erase(0, size + 8);
            already_sent = 0;
            if (deliver) {
                armed_ = false;
                passed_deliver = true;
            }
        }
        return true;
    };
    char buffer[65536];
    while (!stop_) {
        std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {client < 0 ? listener_ : client, POLLIN, 0}};
        if (broker >= 0) fds.push_back({broker, POLLIN, 0});
        if (::poll(fds.data(), fds.size(), 1000) < 0) break;
        if (fds[0].revents) {
            [[maybe_unused]] auto n = ::read(wake_[0], buffer, sizeof buffer);
            if (client >= 0 && !pass_on()) break;
        }
        if (client < 0) {
            if (!(fds[1].revents & POLLIN)) continue;
            client = ::accept(listener_, nullptr, nullptr);
            broker = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in address{};
            address.sin_family = AF_INET;
            address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            address.sin_port = htons(static_cast<std::uint16_t>(BrokerEnvironment::Get().amqp_port));
            if (::connect(broker, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) break;
            continue;
        }
        if (fds[1].revents) {
            const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
            if (n <= 0 || !send_all(broker, buffer, static_cast<std::size_t>(n))) break;
        }
        if (fds.size() > 2 && fds[2].revents) {
            const ssize_t n = ::recv(broker, buffer, sizeof buffer, 0);
            if (n <= 0) break;
            from_broker.append(buffer, static_cast<std::size_t>(n));
            if (!pass_on()) break;
        }
    }
    if (client >= 0) ::close(client);
    if (broker >= 0) ::close(broker);
}

void RestartBrokerApp(int seconds_down) {
    RunBrokerScript("restart-app", {std::to_string(seconds_down)}, "restarting the broker");
}

std::string Header(const messaging::MessageProperties& properties, const std::string& name) {
    const auto* value = messaging::FindHeader(properties.headers, name);
    return value ? messaging::HeaderToString(*value) : "<missing>";
}

void SubmitOrder(BrokerSystem& system, const std::string& id, const std::string& amount) {
    auto done = std::make_shared<std::promise<order_service::SubmitOutcome>>();
    auto future = done->get_future();
    system.loop().Post([&system, id, amount, done] {
        order_service::NewOrder order{contracts::OrderId::Parse(id).value(),
                                      "CUST-7",
                                      *contracts::Decimal::Parse(amount),
                                      {{"SKU-1", 1, *contracts::Decimal::Parse(amount)}}};
        system.orders().submission().Submit(order, messaging::TraceContext::NewRoot(),
                                            [done](order_service::SubmitOutcome outcome) { done->set_value(outcome); });
    });
    REQUIRE(future.get() == order_service::SubmitOutcome::kAccepted);
}

bool QueuesSettled(ManagementApi& api, const ScopedVhost& vhost) {
    const Json queues = api.Get("queues/" + Encode(vhost.name()));
    for (const auto& queue : queues)
        if (queue.value("messages_unacknowledged", 0) != 0) return false;
    return true;
}

std::pair<std::chrono::milliseconds, Json> SlowestHealth(httplib::Client& client, int count) {
    std::chrono::milliseconds slowest{0};
    Json body;
    for (int i = 0; i < count; ++i) {
        const auto asked = std::chrono::steady_clock::now();
        auto result = client.Get("/health");
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked);
        if (!result) return {std::chrono::milliseconds::max(), Json()};
        slowest = std::max(slowest, took);
        body = Json::parse(result->body);
    }
    return {slowest, body};
}

}  // namespace broker_test
