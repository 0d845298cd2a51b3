#include "Http/HttpServer.h"

#include <spdlog/spdlog.h>

#include <ctime>
#include <stdexcept>
#include <vector>

#include "Runtime/HandleState.h"

namespace messaging {
namespace {

constexpr std::size_t kReadBufferBytes = 64 * 1024;
// After the last answer of a closing connection, how long its unread input is drained before the
// socket is closed (closing with unread input would reset the connection and could lose the answer).
constexpr std::chrono::milliseconds kLinger{2000};
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

using Clock = std::chrono::steady_clock;

// The peer's IP address as text ("127.0.0.1", "::1"); empty when it cannot be read.
std::string PeerAddress(const uv_tcp_t& tcp) {
    sockaddr_storage peer{};
    int length = sizeof peer;
    if (uv_tcp_getpeername(&tcp, reinterpret_cast<sockaddr*>(&peer), &length) != 0) return {};
    char text[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET6)
        uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&peer), text, sizeof text);
    else
        uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&peer), text, sizeof text);
    return text;
}

}  // namespace

struct HttpResponder::Connection : HandleState {
    uv_tcp_t tcp{};
    HttpServer* server = nullptr;
    std::shared_ptr<Connection*> self = std::make_shared<Connection*>(this);
    std::string input;
    HttpRequestParser parser;
    std::uint64_t request_number = 0;
    int minor_version = 1;
    bool handling = false;      // a request has been handed to the handler and not answered
    bool keep_alive = true;     // of the request being handled
    bool head_request = false;  // HEAD: the answer's headers without its body
    bool processing = false;    // inside Process (an answer given synchronously must not recurse)
    bool reading = false;
    bool draining = false;  // answered for the last time; reading until EOF or the linger ends
    bool closing = false;
    bool arriving = false;  // bytes of a request not yet complete have come
    std::size_t pending_writes = 0;
    std::string client;  // the peer's address, the key of its share of connections
    Clock::time_point last_activity = Clock::now();
    Clock::time_point arrival_started{};  // the first byte of the request that is arriving
    Clock::time_point request_started{};  // handed to the handler
    std::string_view method;              // of the request handled, as HttpServerMetrics labels it
    std::string_view route;               // the template it matched, when the handler named one
    Clock::time_point draining_since{};

    explicit Connection(HttpLimits limits) : parser(limits) { tcp.data = static_cast<HandleState*>(this); }
    static Connection& Of(uv_handle_t* handle) {
        return *static_cast<Connection*>(static_cast<HandleState*>(handle->data));
    }
    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
};

struct HttpServer::Listener : HandleState {
    uv_tcp_t tcp{};
    HttpServer* server = nullptr;
};

HttpResponder::Connection* HttpResponder::Target() const {
    auto link = connection_.lock();
    if (!link || !*link) return nullptr;
    Connection* connection = *link;
    if (connection->closing || !connection->handling || connection->request_number != request_number_) return nullptr;
    return connection;
}

bool HttpResponder::Pending() const {
    return Target() != nullptr;
}

void HttpResponder::SetRoute(std::string_view route) const {
    if (Connection* connection = Target()) connection->route = route;
}

void HttpResponder::Send(HttpResponse response) const {
    if (Connection* connection = Target()) connection->server->Answer(*connection, response);
}

HttpServer::HttpServer(EventLoop& loop, HttpServerOptions options, HttpHandler handler, HttpErrorWriter error_writer)
    : loop_(loop),
      options_(std::move(options)),
      handler_(std::move(handler)),
      error_writer_(std::move(error_writer)),
      metrics_(options_.metrics ? std::make_unique<HttpServerMetrics>(*options_.metrics) : nullptr),
      sweep_timer_(loop),
      loop_lifetime_(loop.lifetime()) {}

HttpServer::~HttpServer() {
    if (loop_lifetime_.expired()) return;  // the loop's destructor closed and freed every handle
    CloseListener();
    std::vector<Connection*> open(connections_.begin(), connections_.end());
    for (Connection* connection : open) Close(*connection);
}

int HttpServer::Listen() {
    sockaddr_storage address{};
    if (uv_ip4_addr(options_.host.c_str(), options_.port, reinterpret_cast<sockaddr_in*>(&address)) != 0 &&
        uv_ip6_addr(options_.host.c_str(), options_.port, reinterpret_cast<sockaddr_in6*>(&address)) != 0)
        throw std::runtime_error("cannot listen on " + options_.host + ": not an IPv4 or IPv6 address");
    auto* listener = new Listener;
    listener->server = this;
    listener->tcp.data = static_cast<HandleState*>(listener);
    if (int rc = uv_tcp_init(loop_.raw(), &listener->tcp); rc < 0) {
        delete listener;
        throw std::runtime_error(std::string("uv_tcp_init: ") + uv_strerror(rc));
    }
    // libuv sets SO_REUSEADDR (restart while old connections linger) but not SO_REUSEPORT: a port
    // another process listens on is an error here, not a silent share of its connections.
    int rc = uv_tcp_bind(&listener->tcp, reinterpret_cast<const sockaddr*>(&address), 0);
    if (rc == 0)
        rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener->tcp), 511, [](uv_stream_t* server, int status) {
            auto* self = static_cast<Listener*>(static_cast<HandleState*>(server->data));
            if (status < 0) {
                spdlog::warn("HTTP: accepting a connection failed: {}", uv_strerror(status));
                return;
            }
            if (self->server) self->server->Accept();
        });
    if (rc < 0) {
        CloseAndFree(reinterpret_cast<uv_handle_t*>(&listener->tcp));
        throw std::runtime_error("cannot listen on " + options_.host + ":" + std::to_string(options_.port) + ": " +
                                 uv_strerror(rc));
    }
    listener_ = listener;
    sockaddr_storage bound{};
    int length = sizeof bound;
    uv_tcp_getsockname(&listener->tcp, reinterpret_cast<sockaddr*>(&bound), &length);
    const int port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                                 : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    const auto period =
        std::max(std::chrono::milliseconds(10),
                 std::min({options_.request_timeout, options_.idle_timeout, options_.receive_timeout, kLinger}) / 4);
    sweep_timer_.Start(
        period, [this] { Sweep(); }, period);
    return port;
}

void HttpServer::StopAccepting() {
    stopping_ = true;
    CloseListener();
    std::vector<Connection*> idle;
    for (Connection* connection : connections_)
        if (!connection->handling && !connection->draining) idle.push_back(connection);
    for (Connection* connection : idle) Close(*connection);
}

void HttpServer::CloseListener() {
    if (!listener_) return;
    listener_->server = nullptr;  // a connection still pending in the accept queue is not taken
    CloseAndFree(reinterpret_cast<uv_handle_t*>(&listener_->tcp));
    listener_ = nullptr;
}

void HttpServer::Accept() {
    auto* connection = new Connection(options_.limits);
    connection->server = this;
    if (uv_tcp_init(loop_.raw(), &connection->tcp) < 0) {
        delete connection;
        return;
    }
    auto refuse = [&] {
        connection->closing = true;
        CloseAndFree(reinterpret_cast<uv_handle_t*>(&connection->tcp));
    };
    if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_->tcp), connection->stream()) < 0) return refuse();
    connection->client = PeerAddress(connection->tcp);
    std::size_t& from_client = connections_per_client_[connection->client];
    if (connections_.size() >= options_.max_connections || from_client >= options_.max_connections_per_client) {
        if (from_client == 0) connections_per_client_.erase(connection->client);
        spdlog::warn("HTTP: a connection from {} refused: {} open in all, {} from that address", connection->client,
                     connections_.size(), from_client);
        return refuse();
    }
    ++from_client;
    uv_tcp_nodelay(&connection->tcp, 1);
    connections_.insert(connection);
    StartReading(*connection);
}

void HttpServer::StartReading(Connection& connection) {
    if (connection.reading || connection.closing) return;
    connection.reading = true;
    uv_read_start(
        connection.stream(),
        [](uv_handle_t*, std::size_t, uv_buf_t* buffer) {
            // Reads are handled before the next one is made: one buffer per loop thread serves all.
            thread_local std::unique_ptr<char[]> storage(new char[kReadBufferBytes]);
            *buffer = uv_buf_init(storage.get(), kReadBufferBytes);
        },
        [](uv_stream_t* stream, ssize_t read, const uv_buf_t* buffer) {
            Connection& self = Connection::Of(reinterpret_cast<uv_handle_t*>(stream));
            if (!self.server) return;  // closing
            if (read > 0)
                self.server->OnRead(self, buffer->base, static_cast<std::size_t>(read));
            else if (read < 0)
                self.server->Close(self);  // the client hung up or reset: an unanswered request is dropped
        });
}

void HttpServer::OnRead(Connection& connection, const char* data, std::size_t size) {
    if (connection.draining) return;  // the linger runs from the last answer, whatever still comes
    connection.last_activity = Clock::now();
    if (!connection.arriving && !connection.handling) {
        connection.arriving = true;
        connection.arrival_started = connection.last_activity;
    }
    connection.input.append(data, size);
    Process(connection);
}

void HttpServer::Process(Connection& connection) {
    if (connection.processing) return;
    connection.processing = true;
    while (!connection.handling && !connection.closing && !connection.draining) {
        const auto result = connection.parser.Parse(connection.input);
        if (result == HttpRequestParser::Result::kNeedMore) {
            if (connection.parser.AwaitsContinue()) {
                Write(connection, std::string(kContinue));
                connection.parser.ContinueSent();
            }
            break;
        }
        if (result == HttpRequestParser::Result::kError) {
            Reject(connection, connection.parser.error_status(), connection.parser.error_message());
            break;
        }
        HttpRequest request = connection.parser.TakeRequest();
        connection.arriving = false;
        connection.handling = true;
        connection.keep_alive = request.keep_alive;
        connection.head_request = request.method == "HEAD";
        connection.minor_version = request.minor_version;
        connection.request_started = Clock::now();
        connection.method = HttpServerMetrics::MethodLabel(request.method);
        connection.route = {};
        const HttpResponder responder(connection.self, ++connection.request_number);
        try {
            handler_(std::move(request), responder);
        } catch (const std::exception& e) {
            spdlog::error("HTTP: the handler failed: {}", e.what());
            responder.Send(error_writer_(500, "unexpected error"));
        }
    }
    connection.processing = false;
    // Pipelined requests wait while one is handled; past a request's worth of input, stop reading.
    const bool flooded = connection.input.size() > options_.limits.max_head_bytes + options_.limits.max_body_bytes;
    if (!connection.closing && connection.reading && connection.handling && flooded) {
        uv_read_stop(connection.stream());
        connection.reading = false;
    }
}

void HttpServer::Answer(Connection& connection, const HttpResponse& response) {
    if (!connection.handling || connection.closing) return;
    connection.handling = false;
    if (metrics_)
        metrics_->Record(connection.method, connection.route, response.status, connection.minor_version,
                         std::chrono::duration<double>(Clock::now() - connection.request_started).count());
    const bool keep_alive = connection.keep_alive && !stopping_;
    const std::string_view header = !keep_alive ? "close" : connection.minor_version == 0 ? "keep-alive" : "";
    std::string message = WriteResponseHead(response, header, Date());
    std::shared_ptr<const std::string> shared_body;
    if (!connection.head_request) {
        if (response.shared_body)
            shared_body = response.shared_body;
        else
            message += response.body;
    }
    Write(connection, std::move(message), std::move(shared_body));
    connection.last_activity = Clock::now();
    if (connection.closing) return;
    if (!keep_alive) {
        ShutdownAndClose(connection);
        return;
    }
    StartReading(connection);
    if (!connection.input.empty()) {
        // A pipelined request, already (partly) here: its deadline runs from now.
        connection.arriving = true;
        connection.arrival_started = Clock::now();
    }
    Process(connection);
}

void HttpServer::Reject(Connection& connection, int status, const std::string& message) {
    spdlog::debug("HTTP: rejecting a request with {}: {}", status, message);
    connection.handling = true;
    connection.keep_alive = false;
    connection.head_request = false;
    connection.request_started = connection.arriving ? connection.arrival_started : Clock::now();
    connection.method = "_OTHER";  // a request that could not be read has no method to tell
    connection.route = {};
    ++connection.request_number;
    Answer(connection, error_writer_(status, message));
}

void HttpServer::Write(Connection& connection, std::string data, std::shared_ptr<const std::string> tail) {
    if (connection.closing) return;
    if (tail && tail->empty()) tail.reset();
    std::size_t tail_offset = 0;  // how much of `tail` the kernel has taken already
    if (connection.pending_writes == 0) {
        // Most answers fit in the socket buffer at once: no request object, no copy.
        uv_buf_t buffers[2] = {uv_buf_init(data.data(), static_cast<unsigned>(data.size())), {}};
        if (tail) buffers[1] = uv_buf_init(const_cast<char*>(tail->data()), static_cast<unsigned>(tail->size()));
        const int written = uv_try_write(connection.stream(), buffers, tail ? 2 : 1);
        const std::size_t total = data.size() + (tail ? tail->size() : 0);
        if (written >= 0 && static_cast<std::size_t>(written) == total) return;
        if (written < 0 && written != UV_EAGAIN) {
            Close(connection);
            return;
        }
        if (written > 0) {
            const auto taken = static_cast<std::size_t>(written);
            if (taken < data.size()) {
                data.erase(0, taken);
            } else {
                tail_offset = taken - data.size();
                data.clear();
            }
        }
    }
    struct WriteRequest {
        uv_write_t request{};
        std::string data;
        std::shared_ptr<const std::string> tail;  // kept alive until the write completes
    };
    auto* write = new WriteRequest;
    write->data = std::move(data);
    write->tail = std::move(tail);
    write->request.data = write;
    uv_buf_t buffers[2];
    unsigned count = 0;
    if (!write->data.empty())
        buffers[count++] = uv_buf_init(write->data.data(), static_cast<unsigned>(write->data.size()));
    if (write->tail)
        buffers[count++] = uv_buf_init(const_cast<char*>(write->tail->data()) + tail_offset,
                                       static_cast<unsigned>(write->tail->size() - tail_offset));
    ++connection.pending_writes;
    const int rc = uv_write(&write->request, connection.stream(), buffers, count, [](uv_write_t* request, int status) {
        // Runs before the connection's close callback, even when the write was cancelled by a close.
        // `request` lives inside the WriteRequest: its stream is read before it is freed.
        Connection& self = Connection::Of(reinterpret_cast<uv_handle_t*>(request->handle));
        delete static_cast<WriteRequest*>(request->data);
        --self.pending_writes;
        if (status < 0 && !self.closing && self.server) self.server->Close(self);
    });
    if (rc < 0) {
        --connection.pending_writes;
        delete write;
        Close(connection);
    }
}

void HttpServer::ShutdownAndClose(Connection& connection) {
    connection.draining = true;
    connection.draining_since = Clock::now();
    connection.input.clear();
    auto* request = new uv_shutdown_t;
    // The shutdown waits for the queued writes, then sends FIN; the client's EOF (or the linger) closes.
    if (uv_shutdown(request, connection.stream(), [](uv_shutdown_t* shutdown, int status) {
            Connection& self = Connection::Of(reinterpret_cast<uv_handle_t*>(shutdown->handle));
            delete shutdown;
            if (status < 0 && !self.closing && self.server) self.server->Close(self);
        }) < 0) {
        delete request;
        Close(connection);
        return;
    }
    StartReading(connection);  // to drain what the client still sends
}

void HttpServer::Close(Connection& connection) {
    if (connection.closing) return;
    connection.closing = true;
    connection.handling = false;
    *connection.self = nullptr;
    connection.server = nullptr;
    connections_.erase(&connection);
    if (auto share = connections_per_client_.find(connection.client);
        share != connections_per_client_.end() && --share->second == 0)
        connections_per_client_.erase(share);
    CloseAndFree(reinterpret_cast<uv_handle_t*>(&connection.tcp));
}

void HttpServer::Sweep() {
    const auto now = Clock::now();
    std::vector<Connection*> open(connections_.begin(), connections_.end());
    for (Connection* connection : open) {
        if (connection->closing) continue;
        if (connection->draining) {
            if (now - connection->draining_since > kLinger) Close(*connection);
        } else if (connection->handling) {
            if (now - connection->request_started > options_.request_timeout) {
                spdlog::warn("HTTP: a request was not answered within {} ms", options_.request_timeout.count());
                Answer(*connection, error_writer_(503, "the service did not answer in time; try again"));
            }
        } else if (connection->arriving) {
            if (now - connection->arrival_started > options_.receive_timeout)
                Reject(*connection, 408,
                       "the request did not arrive whole within " + std::to_string(options_.receive_timeout.count()) +
                           " ms");
        } else if (now - connection->last_activity > options_.idle_timeout) {
            Close(*connection);
        }
    }
}

const std::string& HttpServer::Date() {
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    if (now != date_second_) {
        date_second_ = now;
        date_ = HttpDate(now);
    }
    return date_;
}

}  // namespace messaging
