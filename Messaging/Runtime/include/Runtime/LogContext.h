// The fields each log line written on this thread carries besides its message, such as the trace id
// and the order id of the work in hand: a LogScope makes a set of fields current for a stretch of code.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace messaging {

inline constexpr const char* kTraceLogField = "trace";
inline constexpr const char* kMessageLogField = "message";  // the id of the message in hand

// Named values, in the order they were first set.
class LogFields {
  public:
    // Sets `name` (a string literal or other static string) to `value`, replacing an earlier value.
    void Set(const char* name, std::string value);
    const std::vector<std::pair<const char*, std::string>>& fields() const { return fields_; }

  private:
    std::vector<std::pair<const char*, std::string>> fields_;
};

// The fields of the innermost LogScope alive on this thread, or nullptr.
const LogFields* CurrentLogFields();

// " name=value" for each current field: what the log pattern writes before the message.
void AppendCurrentLogFields(std::string& out);

// Makes `fields` current on this thread until destroyed; fields set on them meanwhile show at once.
// Scopes nest: the one before comes back when this one ends.
class LogScope {
  public:
    explicit LogScope(const LogFields& fields);
    ~LogScope();
    LogScope(const LogScope&) = delete;
    LogScope& operator=(const LogScope&) = delete;

  private:
    const LogFields* previous_;
};

}  // namespace messaging
