// An HTTP/1.1 server on the event loop: connections are accepted, read, parsed and answered on the
// loop thread, so a handler can use the bus and the database directly and answer later (after a
// commit) with no thread hand-off. Keep-alive, pipelining (answered in order), chunked bodies,
// Expect: 100-continue, size limits, idle, receive and answer deadlines, and connection caps in all
// and per client address. Create, use and destroy it on the
// loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "Http/HttpMessage.h"
#include "Http/HttpServerMetrics.h"
#include "Runtime/EventLoop.h"

namespace messaging {

struct HttpServerOptions {
    std::string host = "0.0.0.0";  // an IPv4 or IPv6 address
    int port = 0;                  // 0 picks a free port
    HttpLimits limits;
    // A handler that has not answered by then gets a 503 answered for it; its late answer is dropped.
    std::chrono::milliseconds request_timeout{10000};
    // A connection with no request in progress is closed after this long.
    std::chrono::milliseconds idle_timeout{60000};
    // A request must arrive whole (head and body) within this long of its first byte, however steadily
    // its bytes come; past it the answer is 408 and the connection closes.
    std::chrono::milliseconds receive_timeout{10000};
    // Connections beyond these are closed as soon as they are accepted: in all, and from one client
    // address, so that no client can hold the others' share.
    std::size_t max_connections = 10000;
    std::size_t max_connections_per_client = 1000;
    // Where each answered request is recorded (HttpServerMetrics); none: nothing is recorded.
    metrics::MetricsRegistry* metrics = nullptr;
};

class HttpServer;

// The one answer to one request. Send() from the loop thread, at once or later; it does nothing if
// the connection is gone or the request was already answered (timed out).
class HttpResponder {
  public:
    void Send(HttpResponse response) const;
    // The connection still waits for this answer.
    bool Pending() const;
    // Names the route template the request matched ("/order/{orderId}"), for the request's metrics.
    // `route` must outlive the server: a string literal.
    void SetRoute(std::string_view route) const;

  private:
    friend class HttpServer;
    struct Connection;
    HttpResponder(std::weak_ptr<Connection*> connection, std::uint64_t request_number)
        : connection_(std::move(connection)), request_number_(request_number) {}
    Connection* Target() const;

    std::weak_ptr<Connection*> connection_;
    std::uint64_t request_number_ = 0;
};

using HttpHandler = std::function<void(HttpRequest request, HttpResponder responder)>;
// The answer the server makes on its own (a malformed request, a timeout) for a status and a message.
using HttpErrorWriter = std::function<HttpResponse(int status, const std::string& message)>;

class HttpServer {
  public:
    HttpServer(EventLoop& loop, HttpServerOptions options, HttpHandler handler, HttpErrorWriter error_writer);
    ~HttpServer();  // closes the listener and every connection; pending responders go quiet
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds and listens; throws std::runtime_error if the address cannot be had. Returns the port.
    int Listen();
    // Closes the listener; idle connections close now, busy ones after their answer.
    void StopAccepting();
    std::size_t connection_count() const { return connections_.size(); }

  private:
    using Connection = HttpResponder::Connection;
    friend class HttpResponder;
    struct Listener;

    void CloseListener();
    void Accept();
    void StartReading(Connection& connection);
    void OnRead(Connection& connection, const char* data, std::size_t size);
    void Process(Connection& connection);
    void Answer(Connection& connection, const HttpResponse& response);
    void Reject(Connection& connection, int status, const std::string& message);
    // Writes `data`, then `tail` when given (a shared body, written from where it is kept).
    void Write(Connection& connection, std::string data, std::shared_ptr<const std::string> tail = nullptr);
    void ShutdownAndClose(Connection& connection);
    void Close(Connection& connection);
    void Sweep();
    const std::string& Date();

    EventLoop& loop_;
    HttpServerOptions options_;
    HttpHandler handler_;
    HttpErrorWriter error_writer_;
    std::unique_ptr<HttpServerMetrics> metrics_;
    Listener* listener_ = nullptr;  // freed by its uv_close callback
    std::unordered_set<Connection*> connections_;
    std::unordered_map<std::string, std::size_t> connections_per_client_;  // by the peer's address
    Timer sweep_timer_;
    std::weak_ptr<void> loop_lifetime_;
    bool stopping_ = false;
    std::int64_t date_second_ = -1;
    std::string date_;
};

}  // namespace messaging
