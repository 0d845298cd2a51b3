// The loop's HTTP/1.1 server: the request parser on its own (every framing, split at every byte, each
// malformed input with its status) and the server over real sockets (keep-alive, pipelining answered
// in order, 100-continue, errors that close, request and idle timeouts, clients that hang up).
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>

#include "Http/HttpServer.h"
#include "Support/MetricsText.h"
#include "Support/Waiting.h"

using namespace messaging;
using namespace std::chrono_literals;

namespace {

// Parses `text` fed in pieces of `step` bytes; the requests it yields, or the error status.
struct Parsed {
    std::vector<HttpRequest> requests;
    int error = 0;
};
Parsed ParseAll(const std::string& text, std::size_t step, HttpLimits limits = {}) {
    HttpRequestParser parser(limits);
    Parsed parsed;
    std::string input;
    for (std::size_t offset = 0; offset < text.size() && parsed.error == 0; offset += step) {
        input.append(text, offset, step);
        for (;;) {
            const auto result = parser.Parse(input);
            if (result == HttpRequestParser::Result::kRequest) {
                parsed.requests.push_back(parser.TakeRequest());
                continue;
            }
            if (result == HttpRequestParser::Result::kError) parsed.error = parser.error_status();
            break;
        }
    }
    return parsed;
}

int ErrorOf(const std::string& text, HttpLimits limits = {}) {
    return ParseAll(text, text.size(), limits).error;
}

// A blocking client socket with a receive deadline, reading whole responses.
class RawClient {
  public:
    // `from`: the loopback address to connect from (another client's address), or the default one.
    explicit RawClient(int port, const char* from = nullptr) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (from) {
            sockaddr_in source{};
            source.sin_family = AF_INET;
            ::inet_pton(AF_INET, from, &source.sin_addr);
            REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&source), sizeof source) == 0);
        }
        timeval deadline{10, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &deadline, sizeof deadline);
        int yes = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    }
    ~RawClient() { ::close(fd_); }
    // Whether the server has sent something (or closed) within `deadline`.
    bool AnswerWithin(std::chrono::milliseconds deadline) {
        if (!buffer_.empty()) return true;
        pollfd watched{fd_, POLLIN, 0};
        return ::poll(&watched, 1, static_cast<int>(deadline.count())) > 0;
    }
    bool connected() const { return connected_; }

    void Send(const std::string& data) {
        REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
    }

    struct Response {
        int status = 0;
        std::map<std::string, std::string> headers;  // names in lower case
        std::string body;
    };
    // The next response, or status 0 if the connection closed or the deadline passed first. An answer to
    // HEAD has no body whatever its Content-Length says: read it `with_body` false.
    Response Read(bool with_body = true) {
        Response response;
        std::size_t head_end;
        while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos)
            if (!Fill()) return response;
        const std::string head = buffer_.substr(0, head_end);
        response.status = std::stoi(head.substr(9, 3));
        std::size_t line = head.find("\r\n");
        while (line != std::string::npos) {
            const std::size_t next = head.find("\r\n", line + 2);
            const std::string field = head.substr(line + 2, next == std::string::npos ? next : next - line - 2);
            std::string name = field.substr(0, field.find(':'));
            for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            response.headers[name] = field.substr(field.find(':') + 2);
            line = next;
        }
        buffer_.erase(0, head_end + 4);
        const std::size_t length =
            with_body && response.headers.count("content-length") ? std::stoul(response.headers["content-length"]) : 0;
        while (buffer_.size() < length)
            if (!Fill()) return Response{};
        response.body = buffer_.substr(0, length);
        buffer_.erase(0, length);
        return response;
    }
    // True when the server closes the connection before the deadline (and sends nothing more).
    bool ClosedByServer() {
        while (buffer_.empty()) {
            char byte;
            const ssize_t n = ::recv(fd_, &byte, 1, 0);
            if (n == 0) return true;
            if (n < 0) return errno == ECONNRESET;
            buffer_.push_back(byte);
        }
        return false;
    }

  private:
    bool Fill() {
        char chunk[4096];
        const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buffer_.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    int fd_ = -1;
    bool connected_ = false;
    std::string buffer_;
};

HttpResponse TextResponse(int status, std::string body) {
    HttpResponse response;
    response.status = status;
    response.content_type = "text/plain";
    response.body = std::move(body);
    return response;
}

// A server on a loop thread of its own. GET /now answers at once with the path; GET /later answers
// when the test says so; GET /never is never answered; /routed names its route and answers 201;
// /shared answers a shared body; POST echoes the body.
struct ServerRig {
    explicit ServerRig(HttpServerOptions options = {}) {
        options.host = "127.0.0.1";
        options.port = 0;
        port = thread.loop().Invoke([&] {
            server = std::make_unique<HttpServer>(
                thread.loop(), options,
                [this](HttpRequest request, HttpResponder responder) {
                    ++requests;
                    if (request.path == "/later") {
                        held.push_back(responder);
                    } else if (request.path == "/never") {
                        held.push_back(responder);
                    } else if (request.path == "/shared") {
                        HttpResponse response = TextResponse(200, "");
                        response.shared_body = shared_body;
                        responder.Send(std::move(response));
                    } else if (request.path == "/routed") {
                        responder.SetRoute("/routed");
                        responder.Send(TextResponse(201, "routed"));
                    } else if (request.method == "POST") {
                        responder.Send(TextResponse(200, "echo:" + request.body));
                    } else {
                        responder.Send(TextResponse(200, request.path + "?" + request.query));
                    }
                },
                [](int status, const std::string& message) { return TextResponse(status, "error:" + message); });
            return server->Listen();
        });
    }
    ~ServerRig() {
        thread.loop().Invoke([&] {
            held.clear();
            server.reset();
        });
    }
    std::size_t Connections() {
        return thread.loop().Invoke([&] { return server->connection_count(); });
    }

    // GET /shared's body: 16 MB, more than a socket takes at once, answered without a copy.
    std::shared_ptr<const std::string> shared_body = [] {
        std::string block;
        for (int i = 0; i < 4096; ++i) block += static_cast<char>('a' + i % 26 + (i / 4000));
        std::string body;
        body.reserve(16 << 20);
        while (body.size() < (16 << 20)) body += block;
        return std::make_shared<const std::string>(std::move(body));
    }();
    EventLoopThread thread;
    std::unique_ptr<HttpServer> server;
    std::vector<HttpResponder> held;
    std::atomic<int> requests{0};
    int port = 0;
};

}  // namespace

TEST_SUITE("Http.Parser") {
    TEST_CASE("A request is read the same whole or split at every byte - names lower-cased and the path decoded") {
        const std::string text =
            "POST /order/a%2Db?x=1&y=%41 HTTP/1.1\r\nHost: localhost\r\nContent-Type:  application/json \r\n"
            "X-Empty:\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}";
        for (std::size_t step : {text.size(), std::size_t{1}, std::size_t{7}}) {
            CAPTURE(step);
            const Parsed parsed = ParseAll(text, step);
            REQUIRE(parsed.error == 0);
            REQUIRE(parsed.requests.size() == 1);
            const HttpRequest& request = parsed.requests[0];
            CHECK(request.method == "POST");
            CHECK(request.target == "/order/a%2Db?x=1&y=%41");
            CHECK(request.path == "/order/a-b");
            CHECK(request.query == "x=1&y=%41");
            CHECK(request.minor_version == 1);
            CHECK(request.keep_alive);
            REQUIRE(request.Header("content-type"));
            CHECK(*request.Header("content-type") == "application/json");
            REQUIRE(request.Header("x-empty"));
            CHECK(request.Header("x-empty")->empty());
            CHECK(request.Header("Host") == nullptr);  // lookups are by the lower-case name
            CHECK(request.body == "{\"a\":\"b c\"}");
        }
    }

    TEST_CASE("A chunked body is joined - extensions and trailer fields are dropped - at every split") {
        const std::string text =
            "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
            "GET /next HTTP/1.1\r\n\r\n";
        for (std::size_t step : {text.size(), std::size_t{1}, std::size_t{3}}) {
            CAPTURE(step);
            const Parsed parsed = ParseAll(text, step);
            REQUIRE(parsed.error == 0);
            REQUIRE(parsed.requests.size() == 2);
            CHECK(parsed.requests[0].body == "hello 0123456789");
            CHECK(parsed.requests[1].path == "/next");
            CHECK(parsed.requests[1].body.empty());
        }
    }

    TEST_CASE("Pipelined requests come out in order - empty lines between them are skipped") {
        const Parsed parsed = ParseAll(
            "GET /1 HTTP/1.1\r\n\r\n\r\nPOST /2 HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"
            "GET /3 HTTP/1.0\r\n\r\n",
            1000);
        REQUIRE(parsed.requests.size() == 3);
        CHECK(parsed.requests[0].path == "/1");
        CHECK(parsed.requests[1].body == "ab");
        CHECK(parsed.requests[2].path == "/3");
        CHECK(parsed.requests[2].minor_version == 0);
    }

    TEST_CASE("Keep-alive follows the version and the Connection header") {
        auto keep_alive = [](const std::string& version, const std::string& connection) {
            std::string text = "GET / " + version + "\r\n";
            if (!connection.empty()) text += "Connection: " + connection + "\r\n";
            const Parsed parsed = ParseAll(text + "\r\n", 1000);
            REQUIRE(parsed.requests.size() == 1);
            return parsed.requests[0].keep_alive;
        };
        CHECK(keep_alive("HTTP/1.1", ""));
        CHECK_FALSE(keep_alive("HTTP/1.1", "close"));
        CHECK_FALSE(keep_alive("HTTP/1.1", "Upgrade, Close"));
        CHECK_FALSE(keep_alive("HTTP/1.0", ""));
        CHECK(keep_alive("HTTP/1.0", "Keep-Alive"));
    }

    TEST_CASE("Each malformed or unservable request gets its own status") {
        CHECK(ErrorOf("GARBAGE\r\n\r\n") == 400);
        CHECK(ErrorOf("GET  / HTTP/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET / HTTP/1.1 extra\r\n\r\n") == 400);
        CHECK(ErrorOf("G(T / HTTP/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET / HTTX/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET / HTTP/2.0\r\n\r\n") == 505);
        CHECK(ErrorOf("GET relative HTTP/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET /a%zz HTTP/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET /a%00 HTTP/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET /a% HTTP/1.1\r\n\r\n") == 400);
        CHECK(ErrorOf("GET / HTTP/1.1\r\nNo colon\r\n\r\n") == 400);
        CHECK(ErrorOf("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n") == 400);
        CHECK(ErrorOf("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n") == 400);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n") == 400);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n") == 400);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n") == 501);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") == 400);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n") == 400);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nExpect: something\r\nContent-Length: 1\r\n\r\n") == 417);
        // Two identical Content-Length values are one length.
        CHECK(ErrorOf("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx") == 0);
    }

    TEST_CASE("Limits - a long head is 431 and a large body 413 by its length or by its chunks") {
        HttpLimits limits;
        limits.max_head_bytes = 256;
        limits.max_body_bytes = 10;
        CHECK(ErrorOf("GET / HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n", limits) == 431);
        // Without the end of the head in sight either: the parser stops reading at the limit.
        CHECK(ErrorOf("GET / HTTP/1.1\r\nX: " + std::string(300, 'a'), limits) == 431);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", limits) == 413);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789", limits) == 0);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n", limits) == 413);
        CHECK(ErrorOf("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n", limits) == 413);
    }

    TEST_CASE("Expect 100-continue is awaited only while a body is to come") {
        HttpRequestParser parser;
        std::string input = "POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n";
        CHECK(parser.Parse(input) == HttpRequestParser::Result::kNeedMore);
        CHECK(parser.AwaitsContinue());
        parser.ContinueSent();
        CHECK_FALSE(parser.AwaitsContinue());
        input = "abc";
        REQUIRE(parser.Parse(input) == HttpRequestParser::Result::kRequest);
        CHECK(parser.TakeRequest().body == "abc");
        input = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n";
        CHECK(parser.Parse(input) == HttpRequestParser::Result::kRequest);
        CHECK_FALSE(parser.AwaitsContinue());
    }

    TEST_CASE("A response carries its status line - length - type - headers - and Connection when asked") {
        HttpResponse response = TextResponse(202, "{}");
        response.content_type = "application/json";
        response.headers.emplace_back("Location", "/order/x");
        CHECK(WriteResponse(response, "", "Thu, 01 Jan 1970 00:00:00 GMT") ==
              "HTTP/1.1 202 Accepted\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\nContent-Type: application/json\r\n"
              "Content-Length: 2\r\nLocation: /order/x\r\n\r\n{}");
        CHECK(WriteResponse(TextResponse(404, ""), "close", "D").find("\r\nConnection: close\r\n\r\n") !=
              std::string::npos);
        CHECK(HttpDate(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
        CHECK(HttpDate(1795281685) == "Sat, 21 Nov 2026 17:21:25 GMT");
    }
}

TEST_SUITE("Http.Server") {
    TEST_CASE("Keep-alive - pipelined requests are answered in order even when the first answers later") {
        ServerRig rig;
        RawClient client(rig.port);
        REQUIRE(client.connected());
        client.Send("GET /now?a=1 HTTP/1.1\r\n\r\n");
        auto first = client.Read();
        CHECK(first.status == 200);
        CHECK(first.body == "/now?a=1");
        CHECK(first.headers.count("date") == 1);
        CHECK(first.headers.count("connection") == 0);

        client.Send("GET /later HTTP/1.1\r\n\r\nPOST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz");
        REQUIRE(test_support::WaitFor([&] { return rig.requests == 2; }));
        // The second request is not handed over while the first waits for its answer.
        CHECK(rig.thread.loop().Invoke([&] { return rig.held.size(); }) == 1);
        rig.thread.loop().Invoke([&] { rig.held[0].Send(TextResponse(201, "later")); });
        auto later = client.Read();
        CHECK(later.status == 201);
        CHECK(later.body == "later");
        auto echo = client.Read();
        CHECK(echo.status == 200);
        CHECK(echo.body == "echo:xyz");
        CHECK(rig.requests == 3);
    }

    TEST_CASE("HEAD is answered with the headers of GET and no body") {
        ServerRig rig;
        RawClient client(rig.port);
        client.Send("HEAD /now HTTP/1.1\r\n\r\nGET /now HTTP/1.1\r\n\r\n");
        auto head = client.Read(/*with_body=*/false);
        CHECK(head.status == 200);
        CHECK(head.headers["content-length"] == "5");
        // Had the HEAD answer carried its body, these would be its bytes, not the next status line.
        auto get = client.Read();
        CHECK(get.status == 200);
        CHECK(get.body == "/now?");
    }

    TEST_CASE("A shared body is written from where it is kept - whole past the socket's buffer - not for HEAD") {
        ServerRig rig;
        RawClient client(rig.port);
        client.Send("HEAD /shared HTTP/1.1\r\n\r\nGET /shared HTTP/1.1\r\n\r\nGET /now HTTP/1.1\r\n\r\n");
        auto head = client.Read(/*with_body=*/false);
        CHECK(head.status == 200);
        CHECK(head.headers["content-length"] == std::to_string(16 << 20));
        auto get = client.Read();
        CHECK(get.status == 200);
        CHECK(get.body == *rig.shared_body);
        auto next = client.Read();
        CHECK(next.body == "/now?");
        // The server kept the body only while writing it.
        CHECK(test_support::WaitFor([&] { return rig.shared_body.use_count() == 1; }));
    }

    TEST_CASE("A client that sends Expect 100-continue is told to go on before it sends the body") {
        ServerRig rig;
        RawClient client(rig.port);
        client.Send("POST /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
        auto go_on = client.Read();
        CHECK(go_on.status == 100);
        client.Send("body");
        auto answer = client.Read();
        CHECK(answer.status == 200);
        CHECK(answer.body == "echo:body");
    }

    TEST_CASE("A malformed request is answered by the error writer and the connection is closed") {
        ServerRig rig;
        RawClient client(rig.port);
        client.Send("NOT HTTP AT ALL\r\n\r\n");
        auto answer = client.Read();
        CHECK(answer.status == 400);
        CHECK(answer.body.rfind("error:", 0) == 0);
        CHECK(answer.headers["connection"] == "close");
        CHECK(client.ClosedByServer());
        CHECK(rig.requests == 0);
    }

    TEST_CASE("Metrics: each answer is recorded by method - route - status and version - unread ones as _OTHER") {
        metrics::MetricsRegistry registry;
        HttpServerOptions options;
        options.metrics = &registry;
        ServerRig rig(options);
        {
            RawClient client(rig.port);
            client.Send("GET /routed HTTP/1.1\r\n\r\nGET /routed HTTP/1.1\r\n\r\nBREW /now HTTP/1.1\r\n\r\n");
            CHECK(client.Read().status == 201);
            CHECK(client.Read().status == 201);
            CHECK(client.Read().status == 200);
        }
        {
            RawClient client(rig.port);
            client.Send("GET /now HTTP/1.0\r\n\r\n");
            CHECK(client.Read().status == 200);
        }
        {
            RawClient client(rig.port);
            client.Send("NOT HTTP AT ALL\r\n\r\n");
            CHECK(client.Read().status == 400);
        }
        const std::string text = rig.thread.loop().Invoke([&] { return registry.Render(); });
        INFO(text);
        const std::string count = "http_server_request_duration_seconds_count";
        using test_support::SampleCount;
        using test_support::SampleSum;
        CHECK(SampleSum(text, count,
                        {{"http_request_method", "GET"},
                         {"http_response_status_code", "201"},
                         {"http_route", "/routed"},
                         {"network_protocol_version", "1.1"},
                         {"url_scheme", "http"}}) == 2);
        // A method HTTP does not define, and a request with no route named: no http_route label.
        CHECK(SampleSum(text, count, {{"http_request_method", "_OTHER"}, {"http_response_status_code", "200"}}) == 1);
        CHECK(SampleSum(text, count, {{"http_request_method", "GET"}, {"network_protocol_version", "1.0"}}) == 1);
        CHECK(SampleSum(text, count, {{"http_request_method", "_OTHER"}, {"http_response_status_code", "400"}}) == 1);
        CHECK(SampleCount(text, count) == 4);
        CHECK(SampleCount(text, count, {{"http_route", "/routed"}}) == 1);
        CHECK(SampleSum(text, count) == 5);
    }

    TEST_CASE("A body over the limit is refused with 413 before it is read") {
        HttpServerOptions options;
        options.limits.max_body_bytes = 100;
        ServerRig rig(options);
        RawClient client(rig.port);
        client.Send("POST /echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + std::string(1000, 'x'));
        auto answer = client.Read();
        CHECK(answer.status == 413);
        CHECK(answer.headers["connection"] == "close");
        CHECK(client.ClosedByServer());
    }

    TEST_CASE("HTTP/1.0 closes after the answer unless it asks to keep the connection") {
        ServerRig rig;
        {
            RawClient client(rig.port);
            client.Send("GET /a HTTP/1.0\r\n\r\n");
            CHECK(client.Read().headers["connection"] == "close");
            CHECK(client.ClosedByServer());
        }
        RawClient client(rig.port);
        client.Send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        CHECK(client.Read().headers["connection"] == "keep-alive");
        client.Send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        CHECK(client.Read().body == "/b?");
    }

    TEST_CASE("A request not answered in time gets 503 - the late answer is dropped - the connection goes on") {
        HttpServerOptions options;
        options.request_timeout = 200ms;
        ServerRig rig(options);
        RawClient client(rig.port);
        client.Send("GET /never HTTP/1.1\r\n\r\n");
        auto timed_out = client.Read();
        CHECK(timed_out.status == 503);
        CHECK(rig.thread.loop().Invoke([&] {
            const bool pending = rig.held[0].Pending();
            rig.held[0].Send(TextResponse(200, "too late"));
            return pending;
        }) == false);
        client.Send("GET /after HTTP/1.1\r\n\r\n");
        auto next = client.Read();
        CHECK(next.status == 200);
        CHECK(next.body == "/after?");
    }

    TEST_CASE("An idle connection is closed - a request that stops arriving gets 408") {
        HttpServerOptions options;
        options.idle_timeout = 200ms;
        options.receive_timeout = 300ms;
        ServerRig rig(options);
        RawClient idle(rig.port);
        CHECK(idle.ClosedByServer());
        RawClient partial(rig.port);
        partial.Send("GET /slow HTTP/1.1\r\nHost: x\r\n");
        auto answer = partial.Read();
        CHECK(answer.status == 408);
        CHECK(partial.ClosedByServer());
        CHECK(test_support::WaitFor([&] { return rig.Connections() == 0; }));
    }

    TEST_CASE("A request that trickles in a byte at a time gets 408 at its receive deadline") {
        HttpServerOptions options;
        options.idle_timeout = 10s;  // each byte comes long before this: only the receive deadline ends it
        options.receive_timeout = 400ms;
        ServerRig rig(options);
        RawClient slow(rig.port);
        const std::string request = "GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(200, 'a') + "\r\n";
        const auto started = std::chrono::steady_clock::now();
        std::size_t sent = 0;
        // One byte every 20 ms, until the server answers: the request never completes.
        while (sent < request.size() && !slow.AnswerWithin(20ms)) slow.Send(request.substr(sent++, 1));
        const auto waited = std::chrono::steady_clock::now() - started;
        CHECK(sent < request.size());
        CHECK(waited < 3s);
        CHECK(slow.Read().status == 408);
        CHECK(slow.ClosedByServer());
    }

    TEST_CASE("A client address holds at most its share of connections - another address is still served") {
        HttpServerOptions options;
        options.max_connections_per_client = 2;
        ServerRig rig(options);
        auto first = std::make_unique<RawClient>(rig.port);
        RawClient second(rig.port);
        first->Send("GET /a HTTP/1.1\r\n\r\n");
        second.Send("GET /a HTTP/1.1\r\n\r\n");
        CHECK(first->Read().status == 200);
        CHECK(second.Read().status == 200);
        RawClient third(rig.port);  // the kernel accepts it; the server closes it at once
        CHECK(third.ClosedByServer());
        RawClient other(rig.port, "127.0.0.2");
        other.Send("GET /b HTTP/1.1\r\n\r\n");
        CHECK(other.Read().status == 200);
        CHECK(rig.Connections() == 3);
        // A closed connection gives its place back.
        first.reset();
        REQUIRE(test_support::WaitFor([&] { return rig.Connections() == 2; }));
        RawClient fourth(rig.port);
        fourth.Send("GET /c HTTP/1.1\r\n\r\n");
        CHECK(fourth.Read().status == 200);
    }

    TEST_CASE("A client that hangs up while its request is handled leaves a responder that does nothing") {
        ServerRig rig;
        {
            RawClient client(rig.port);
            client.Send("GET /later HTTP/1.1\r\n\r\n");
            REQUIRE(test_support::WaitFor([&] { return rig.requests == 1; }));
        }
        REQUIRE(test_support::WaitFor([&] { return rig.Connections() == 0; }));
        CHECK_FALSE(rig.thread.loop().Invoke([&] {
            rig.held[0].Send(TextResponse(200, "nobody listens"));
            return rig.held[0].Pending();
        }));
    }

    TEST_CASE("After StopAccepting new connections are refused and idle ones are closed") {
        ServerRig rig;
        RawClient idle(rig.port);
        idle.Send("GET /a HTTP/1.1\r\n\r\n");
        CHECK(idle.Read().status == 200);
        rig.thread.loop().Invoke([&] { rig.server->StopAccepting(); });
        CHECK(idle.ClosedByServer());
        RawClient late(rig.port);
        CHECK_FALSE(late.connected());
    }
}
