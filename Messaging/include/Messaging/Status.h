// The one error currency of the repository: a Status (code + message) and Result<T>, a value or a
// Status. C APIs (libuv ints, rabbitmq-c replies, SQLite rc) are converted into it at one place each.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace messaging {

enum class StatusCode { kOk, kInvalidArgument, kNotFound, kConflict, kUnavailable, kPreconditionFailed, kInternal };

class Status {
  public:
    Status() = default;
    Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
    static Status Ok() { return {}; }
    static Status Unavailable(std::string message) { return {StatusCode::kUnavailable, std::move(message)}; }
    static Status Internal(std::string message) { return {StatusCode::kInternal, std::move(message)}; }
    static Status Conflict(std::string message) { return {StatusCode::kConflict, std::move(message)}; }
    static Status NotFound(std::string message) { return {StatusCode::kNotFound, std::move(message)}; }
    static Status InvalidArgument(std::string message) { return {StatusCode::kInvalidArgument, std::move(message)}; }

    bool ok() const { return code_ == StatusCode::kOk; }
    StatusCode code() const { return code_; }
    const std::string& message() const { return message_; }
    std::string ToString() const { return ok() ? "OK" : message_; }

  private:
    StatusCode code_ = StatusCode::kOk;
    std::string message_;
};

template <class T>
class Result {
  public:
    Result(T value) : value_(std::move(value)) {}
    Result(Status status) : value_(std::move(status)) {}
    bool ok() const { return std::holds_alternative<T>(value_); }
    const T& value() const& { return std::get<T>(value_); }
    T&& value() && { return std::get<T>(std::move(value_)); }
    const Status& status() const {
        static const Status kOk;
        return ok() ? kOk : std::get<Status>(value_);
    }

  private:
    std::variant<T, Status> value_;
};

}  // namespace messaging
