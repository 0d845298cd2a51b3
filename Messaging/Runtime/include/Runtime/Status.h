// Status (code + message): the error currency of every asynchronous seam. C APIs (libuv ints,
// AMQP replies, SQLite rc) are converted into it at one place each. Where exceptions are allowed
// instead, and where each is caught, is written down in Messaging/README.md ("Errors").
#pragma once

#include <string>
#include <utility>

namespace messaging {

enum class StatusCode {
    kOk,
    kInvalidArgument,
    kNotFound,
    kUnavailable,
    kPreconditionFailed,
    kPermissionDenied,
    kInternal
};

// The code's name without its prefix ("Unavailable"), as metrics label a failure's kind.
inline const char* StatusCodeName(StatusCode code) {
    switch (code) {
        case StatusCode::kOk:
            return "Ok";
        case StatusCode::kInvalidArgument:
            return "InvalidArgument";
        case StatusCode::kNotFound:
            return "NotFound";
        case StatusCode::kUnavailable:
            return "Unavailable";
        case StatusCode::kPreconditionFailed:
            return "PreconditionFailed";
        case StatusCode::kPermissionDenied:
            return "PermissionDenied";
        case StatusCode::kInternal:
            return "Internal";
    }
    return "Unknown";
}

class Status {
  public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status Ok() { return {}; }
    static Status Unavailable(std::string message) { return {StatusCode::kUnavailable, std::move(message)}; }
    static Status Internal(std::string message) { return {StatusCode::kInternal, std::move(message)}; }
    static Status NotFound(std::string message) { return {StatusCode::kNotFound, std::move(message)}; }
    static Status InvalidArgument(std::string message) { return {StatusCode::kInvalidArgument, std::move(message)}; }
    // Refused for good (the broker's 403): trying again does not help.
    static Status PermissionDenied(std::string message) { return {StatusCode::kPermissionDenied, std::move(message)}; }
    static Status PreconditionFailed(std::string message) {
        return {StatusCode::kPreconditionFailed, std::move(message)};
    }

    bool ok() const { return code_ == StatusCode::kOk; }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }
    std::string ToString() const { return ok() ? "OK" : message_; }

  private:
    StatusCode code_ = StatusCode::kOk;
    std::string message_;
};

}  // namespace messaging
