// Identifiers and timestamps as they travel on the wire: GUIDs (written in the lowercase hyphenated
// "D" form, read in the N, D, B and P forms .NET accepts), order ids, and ISO-8601 UTC date-times.
#pragma once

#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace contracts {

class Guid {
  public:
    Guid() = default;
    static Guid New();  // random (version 4)
    static std::optional<Guid> Parse(std::string_view text);

    std::string ToString() const;  // "D" format, lowercase
    bool IsEmpty() const;
    bool operator==(const Guid&) const = default;

  private:
    std::array<std::uint8_t, 16> bytes_{};
};

// 64 bits from this thread's random engine (seeded from std::random_device): for GUIDs and trace ids.
std::uint64_t RandomWord();

// The name log lines give the order id they are about: "order=<id>".
inline constexpr const char* kOrderLogField = "order";

// An order id is 1-64 characters of [A-Za-z0-9_-]; a lowercase GUID qualifies.
bool IsValidOrderId(std::string_view order_id);

// A validated order id: the only way to make one is Parse (or New), so a value of this type always
// satisfies IsValidOrderId. A default-constructed OrderId is empty and means "none yet".
class OrderId {
  public:
    OrderId() = default;
    static std::optional<OrderId> Parse(std::string_view text);
    static OrderId New();  // a fresh lowercase GUID

    const std::string& str() const { return value_; }
    bool empty() const { return value_.empty(); }
    auto operator<=>(const OrderId&) const = default;

  private:
    explicit OrderId(std::string value) : value_(std::move(value)) {}
    std::string value_;
};

namespace literals {
// "o-1"_order_id, for ids written in source (tests, samples); an invalid literal throws
// std::invalid_argument.
OrderId operator""_order_id(const char* text, std::size_t length);
}  // namespace literals

using Timestamp = std::chrono::time_point<std::chrono::system_clock, std::chrono::microseconds>;

Timestamp UtcNow();
// "2026-02-10T14:03:05.4129871Z": seven fractional digits at most, trailing zeros dropped.
std::string FormatIso8601(Timestamp time);
// Accepts a fractional part of any length and a "Z" or "+hh:mm"/"-hh:mm" offset; a missing offset means UTC.
std::optional<Timestamp> ParseIso8601(std::string_view text);

std::int64_t ToUnixMillis(Timestamp time);
Timestamp FromUnixMillis(std::int64_t millis);

}  // namespace contracts

template <>
struct std::hash<contracts::OrderId> {
    std::size_t operator()(const contracts::OrderId& id) const noexcept { return std::hash<std::string>{}(id.str()); }
};
