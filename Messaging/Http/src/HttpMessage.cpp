#include "Http/HttpMessage.h"

#include <algorithm>
#include <ctime>

namespace messaging {
namespace {

// RFC 9110 token characters (method and header names).
bool IsTokenChar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~':
            return true;
        default:
            return false;
    }
}

bool IsToken(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), IsTokenChar);
}

std::string Lower(std::string_view text) {
    std::string out(text);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view Trim(std::string_view text) {
    while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
    return text;
}

int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool PercentDecode(std::string_view text, std::string& out) {
    out.clear();
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out.push_back(text[i]);
            continue;
        }
        if (i + 2 >= text.size()) return false;
        const int high = HexValue(text[i + 1]);
        const int low = HexValue(text[i + 2]);
        if (high < 0 || low < 0 || (high == 0 && low == 0)) return false;
        out.push_back(static_cast<char>(high * 16 + low));
        i += 2;
    }
    return true;
}

// Each comma-separated element of every header called `name`, trimmed and in lower case.
std::vector<std::string> HeaderTokens(const HttpRequest& request, std::string_view name) {
    std::vector<std::string> tokens;
    for (const auto& [key, value] : request.headers) {
        if (key != name) continue;
        std::string_view rest = value;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            const auto token = Trim(rest.substr(0, comma));
            if (!token.empty()) tokens.push_back(Lower(token));
            if (comma == std::string_view::npos) break;
            rest.remove_prefix(comma + 1);
        }
    }
    return tokens;
}

}  // namespace

const std::string* HttpRequest::Header(std::string_view lower_case_name) const {
    for (const auto& [name, value] : headers)
        if (name == lower_case_name) return &value;
    return nullptr;
}

std::string_view ReasonPhrase(int status) {
    switch (status) {
        case 100:
            return "Continue";
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 202:
            return "Accepted";
        case 204:
            return "No Content";
        case 400:
            return "Bad Request";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 413:
            return "Content Too Large";
        case 415:
            return "Unsupported Media Type";
        case 417:
            return "Expectation Failed";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        case 505:
            return "HTTP Version Not Supported";
        default:
            return "Status";
    }
}

std::string HttpDate(std::int64_t unix_seconds) {
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const std::time_t time = static_cast<std::time_t>(unix_seconds);
    std::tm utc{};
    gmtime_r(&time, &utc);
    char text[32];
    std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[utc.tm_wday], utc.tm_mday,
                  kMonths[utc.tm_mon], utc.tm_year + 1900, utc.tm_hour, utc.tm_min, utc.tm_sec);
    return text;
}

std::string WriteResponse(const HttpResponse& response, std::string_view connection, std::string_view date) {
    std::string out = WriteResponseHead(response, connection, date);
    out += response.BodyView();
    return out;
}

std::string WriteResponseHead(const HttpResponse& response, std::string_view connection, std::string_view date) {
    std::string out;
    // The body usually follows in the same string (WriteResponse, and the server for a body of its own).
    out.reserve(160 + (response.shared_body ? 0 : response.body.size()));
    out += "HTTP/1.1 ";
    out += std::to_string(response.status);
    out += ' ';
    out += ReasonPhrase(response.status);
    out += "\r\nDate: ";
    out += date;
    out += "\r\n";
    if (!response.content_type.empty()) {
        out += "Content-Type: ";
        out += response.content_type;
        out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(response.BodyView().size());
    out += "\r\n";
    for (const auto& [name, value] : response.headers) {
        out += name;
        out += ": ";
        out += value;
        out += "\r\n";
    }
    if (!connection.empty()) {
        out += "Connection: ";
        out += connection;
        out += "\r\n";
    }
    out += "\r\n";
    return out;
}

HttpRequestParser::Result HttpRequestParser::Fail(int status, std::string message) {
    state_ = State::kFailed;
    error_status_ = status;
    error_message_ = std::move(message);
    awaits_continue_ = false;
    return Result::kError;
}

HttpRequestParser::Result HttpRequestParser::Complete() {
    state_ = State::kHead;
    awaits_continue_ = false;
    return Result::kRequest;
}

HttpRequest HttpRequestParser::TakeRequest() {
    HttpRequest request = std::move(request_);
    request_ = HttpRequest{};
    return request;
}

HttpRequestParser::Result HttpRequestParser::Parse(std::string& input) {
    for (;;) {
        switch (state_) {
            case State::kFailed:
                return Result::kError;

            case State::kHead: {
                if (head_scanned_ == 0) {
                    // A client may send empty lines between requests (RFC 9112, 2.2).
                    std::size_t skip = 0;
                    while (skip + 1 < input.size() && input[skip] == '\r' && input[skip + 1] == '\n') skip += 2;
                    if (skip) input.erase(0, skip);
                }
                if (input.empty()) return Result::kNeedMore;
                const std::size_t from = head_scanned_ >= 3 ? head_scanned_ - 3 : 0;
                const std::size_t end = input.find("\r\n\r\n", from);
                if (end == std::string::npos) {
                    if (input.size() > limits_.max_head_bytes)
                        return Fail(431, "the request line and headers are larger than " +
                                             std::to_string(limits_.max_head_bytes) + " bytes");
                    head_scanned_ = input.size();
                    return Result::kNeedMore;
                }
                head_scanned_ = 0;
                if (end + 4 > limits_.max_head_bytes)
                    return Fail(431, "the request line and headers are larger than " +
                                         std::to_string(limits_.max_head_bytes) + " bytes");
                const Result head = ParseHead(std::string_view(input.data(), end));
                input.erase(0, end + 4);
                if (head != Result::kNeedMore) return head;
                break;
            }

            case State::kFixedBody:
            case State::kChunkData: {
                if (input.empty()) return Result::kNeedMore;
                awaits_continue_ = false;  // the client did not wait for "100 Continue"
                const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, input.size()));
                request_.body.append(input, 0, take);
                input.erase(0, take);
                remaining_ -= take;
                if (remaining_ > 0) return Result::kNeedMore;
                if (state_ == State::kFixedBody) return Complete();
                state_ = State::kChunkDataEnd;
                break;
            }

            case State::kChunkDataEnd:
                if (input.size() < 2) return Result::kNeedMore;
                if (input[0] != '\r' || input[1] != '\n') return Fail(400, "a chunk does not end with CRLF");
                input.erase(0, 2);
                state_ = State::kChunkSize;
                break;

            case State::kChunkSize: {
                const std::size_t end = input.find("\r\n");
                if (end == std::string::npos) {
                    if (input.size() > 1024) return Fail(400, "a chunk-size line is too long");
                    return Result::kNeedMore;
                }
                awaits_continue_ = false;
                std::uint64_t size = 0;
                std::size_t i = 0;
                for (; i < end && HexValue(input[i]) >= 0; ++i) {
                    if (size > (std::uint64_t{1} << 56)) return Fail(413, "a chunk is too large");
                    size = size * 16 + static_cast<std::uint64_t>(HexValue(input[i]));
                }
                if (i == 0 || (i < end && input[i] != ';' && input[i] != ' ' && input[i] != '\t'))
                    return Fail(400, "a chunk size is not a hexadecimal number");
                if (request_.body.size() + size > limits_.max_body_bytes)
                    return Fail(413, "the body is larger than " + std::to_string(limits_.max_body_bytes) + " bytes");
                input.erase(0, end + 2);
                if (size == 0) {
                    state_ = State::kTrailer;
                    trailer_bytes_ = 0;
                } else {
                    remaining_ = size;
                    state_ = State::kChunkData;
                }
                break;
            }

            case State::kTrailer: {
                const std::size_t end = input.find("\r\n");
                if (end == std::string::npos) {
                    if (trailer_bytes_ + input.size() > limits_.max_head_bytes)
                        return Fail(431, "the trailer fields are too large");
                    return Result::kNeedMore;
                }
                trailer_bytes_ += end + 2;
                if (trailer_bytes_ > limits_.max_head_bytes) return Fail(431, "the trailer fields are too large");
                input.erase(0, end + 2);
                if (end == 0) return Complete();  // trailer fields are read and dropped
                break;
            }
        }
    }
}

HttpRequestParser::Result HttpRequestParser::ParseHead(std::string_view head) {
    std::size_t line_end = head.find("\r\n");
    const std::string_view line = head.substr(0, line_end);
    const std::size_t first = line.find(' ');
    const std::size_t second = first == std::string_view::npos ? first : line.find(' ', first + 1);
    if (second == std::string_view::npos || line.find(' ', second + 1) != std::string_view::npos)
        return Fail(400, "the request line is not 'METHOD target HTTP/1.1'");
    const std::string_view method = line.substr(0, first);
    const std::string_view target = line.substr(first + 1, second - first - 1);
    const std::string_view version = line.substr(second + 1);
    if (!IsToken(method)) return Fail(400, "the request method is not a token");
    if (target.empty() ||
        std::any_of(target.begin(), target.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20; }))
        return Fail(400, "the request target is empty or holds control characters");
    if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
        !std::isdigit(static_cast<unsigned char>(version[5])) || !std::isdigit(static_cast<unsigned char>(version[7])))
        return Fail(400, "the request line does not end in an HTTP version");
    if (version[5] != '1') return Fail(505, "only HTTP/1.0 and HTTP/1.1 are served");
    request_.method = std::string(method);
    request_.target = std::string(target);
    request_.minor_version = version[7] == '0' ? 0 : 1;

    while (line_end != std::string_view::npos) {
        const std::size_t start = line_end + 2;
        line_end = head.find("\r\n", start);
        const std::string_view field =
            head.substr(start, line_end == std::string_view::npos ? head.npos : line_end - start);
        if (!field.empty() && (field.front() == ' ' || field.front() == '\t'))
            return Fail(400, "folded header lines are not accepted");
        const std::size_t colon = field.find(':');
        if (colon == std::string_view::npos || !IsToken(field.substr(0, colon)))
            return Fail(400, "a header line is not 'Name: value'");
        const std::string_view value = Trim(field.substr(colon + 1));
        if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\0' || c == '\r' || c == '\n'; }))
            return Fail(400, "a header value holds CR, LF or NUL");
        request_.headers.emplace_back(Lower(field.substr(0, colon)), std::string(value));
    }

    // The path: origin form, or absolute form (a proxy's request) reduced to its path.
    std::string_view origin = target;
    if (origin.front() != '/') {
        const std::size_t scheme = origin.find("://");
        const std::string scheme_name = Lower(origin.substr(0, scheme == std::string_view::npos ? 0 : scheme));
        if (scheme_name != "http" && scheme_name != "https") return Fail(400, "the request target is not a path");
        const std::size_t path = origin.find('/', scheme + 3);
        origin = path == std::string_view::npos ? std::string_view("/") : origin.substr(path);
    }
    const std::size_t question = origin.find('?');
    if (question != std::string_view::npos) request_.query = std::string(origin.substr(question + 1));
    if (!PercentDecode(origin.substr(0, question), request_.path))
        return Fail(400, "the request path holds a malformed percent-escape");

    const auto connection = HeaderTokens(request_, "connection");
    const auto has = [&](const char* token) {
        return std::find(connection.begin(), connection.end(), token) != connection.end();
    };
    request_.keep_alive = request_.minor_version >= 1 ? !has("close") : has("keep-alive") && !has("close");

    bool body_follows = false;
    const std::string* transfer_encoding = request_.Header("transfer-encoding");
    const std::string* content_length = request_.Header("content-length");
    if (transfer_encoding) {
        if (content_length) return Fail(400, "a request may not carry both Transfer-Encoding and Content-Length");
        if (HeaderTokens(request_, "transfer-encoding") != std::vector<std::string>{"chunked"})
            return Fail(501, "only the chunked transfer coding is served");
        state_ = State::kChunkSize;
        body_follows = true;
    } else if (content_length) {
        std::uint64_t length = 0;
        for (const auto& [name, value] : request_.headers) {
            if (name != "content-length") continue;
            if (value.empty() || value.size() > 18 ||
                !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }))
                return Fail(400, "Content-Length is not a number");
            const std::uint64_t this_length = std::stoull(value);
            if (&value != content_length && this_length != length)
                return Fail(400, "the request has different Content-Length values");
            length = this_length;
        }
        if (length > limits_.max_body_bytes)
            return Fail(413, "the body is larger than " + std::to_string(limits_.max_body_bytes) + " bytes");
        if (length > 0) {
            state_ = State::kFixedBody;
            remaining_ = length;
            body_follows = true;
        }
    }

    if (const std::string* expect = request_.Header("expect")) {
        if (Lower(*expect) != "100-continue") return Fail(417, "only 'Expect: 100-continue' is understood");
        awaits_continue_ = body_follows && request_.minor_version >= 1;
    }
    if (!body_follows) return Complete();
    return Result::kNeedMore;
}

}  // namespace messaging
