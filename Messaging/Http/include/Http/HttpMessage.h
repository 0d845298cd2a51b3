// HTTP/1.1 requests and responses as the loop's HTTP server sees them: an incremental request parser
// (Content-Length and chunked bodies, limits, Expect: 100-continue) and the response writer. Pure code,
// no sockets: HttpServer feeds it the bytes it reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace messaging {

struct HttpRequest {
    std::string method;
    std::string target;  // as sent
    std::string path;    // the target's path, percent-decoded
    std::string query;   // after '?', as sent
    int minor_version = 1;
    std::vector<std::pair<std::string, std::string>> headers;  // names in lower case, in order
    std::string body;
    bool keep_alive = true;

    // The first header called `lower_case_name`, or nullptr.
    const std::string* Header(std::string_view lower_case_name) const;
};

struct HttpResponse {
    int status = 200;
    std::string content_type = "application/json";
    std::vector<std::pair<std::string, std::string>> headers;  // besides Content-Type/-Length, Connection, Date
    std::string body;
    // A body kept elsewhere for many responses (a static file), written from there without a copy;
    // when set, `body` is ignored.
    std::shared_ptr<const std::string> shared_body{};

    std::string_view BodyView() const { return shared_body ? std::string_view(*shared_body) : std::string_view(body); }
};

// The whole response: status line, headers and body. `connection` is the Connection header's value
// ("close", "keep-alive"; empty: none), `date` an IMF-fixdate (HttpDate).
std::string WriteResponse(const HttpResponse& response, std::string_view connection, std::string_view date);
// The status line and headers only (Content-Length the body's): what precedes the body on the wire.
std::string WriteResponseHead(const HttpResponse& response, std::string_view connection, std::string_view date);
// "Sat, 21 Nov 2026 17:01:25 GMT" for a Unix time in seconds.
std::string HttpDate(std::int64_t unix_seconds);
std::string_view ReasonPhrase(int status);

struct HttpLimits {
    std::size_t max_head_bytes = 16 * 1024;    // request line and headers; beyond: 431
    std::size_t max_body_bytes = 1024 * 1024;  // beyond: 413
};

// Reads requests one after another from the bytes of one connection. Parse() takes what it can from
// the front of `input` (erasing it) and says whether a whole request is ready; after kError the
// connection must be answered with error_status() and closed.
class HttpRequestParser {
  public:
    enum class Result { kNeedMore, kRequest, kError };

    explicit HttpRequestParser(HttpLimits limits = {}) : limits_(limits) {}

    Result Parse(std::string& input);
    // After kRequest: the request, and the parser is ready for the next one.
    HttpRequest TakeRequest();

    // The head has been read, a body is to come, and the client waits for "100 Continue" first.
    bool AwaitsContinue() const { return awaits_continue_; }
    void ContinueSent() { awaits_continue_ = false; }
    // Some bytes of a request have been read, not all of it.
    bool InsideRequest() const { return state_ != State::kHead || head_scanned_ > 0; }

    int error_status() const { return error_status_; }
    const std::string& error_message() const { return error_message_; }

  private:
    enum class State { kHead, kFixedBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailer, kFailed };

    Result Fail(int status, std::string message);
    Result ParseHead(std::string_view head);
    Result Complete();

    HttpLimits limits_;
    State state_ = State::kHead;
    HttpRequest request_;
    std::size_t head_scanned_ = 0;  // bytes of `input` already searched for the end of the head
    std::uint64_t remaining_ = 0;   // of the fixed body or of the current chunk
    std::size_t trailer_bytes_ = 0;
    bool awaits_continue_ = false;
    int error_status_ = 0;
    std::string error_message_;
};

}  // namespace messaging
