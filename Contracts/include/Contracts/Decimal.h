// A fixed-point decimal for money, the C++ counterpart of .NET's System.Decimal on the wire.
// It keeps the scale it was written with ("150.00" stays "150.00"), compares by value, and never
// passes through a double.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace contracts {

class Decimal {
  public:
    static constexpr int kMaxScale = 8;

    constexpr Decimal() = default;

    // Parses "149.97", "-3", "1e2" is rejected; at most kMaxScale fractional digits and 18 digits in all.
    static std::optional<Decimal> Parse(std::string_view text);
    static Decimal FromUnits(std::int64_t units, int scale);  // FromUnits(14997, 2) == 149.97

    std::string ToString() const;
    int Scale() const { return scale_; }
    std::int64_t Units() const { return units_; }
    // The number of fractional digits that carry information ("1.50" -> 1).
    int SignificantScale() const;
    bool IsPositive() const { return units_ > 0; }

    // Arithmetic keeps the larger scale; it throws std::overflow_error instead of wrapping.
    Decimal operator+(const Decimal& other) const;
    Decimal operator*(std::int64_t factor) const;

    bool operator==(const Decimal& other) const;
    std::strong_ordering operator<=>(const Decimal& other) const;

  private:
    constexpr Decimal(std::int64_t units, int scale) : units_(units), scale_(scale) {}
    Decimal Rescaled(int scale) const;

    std::int64_t units_ = 0;
    int scale_ = 0;
};

// Money, as this system takes it everywhere (the HTTP API and every message that carries an amount):
// at most 2 decimals as written and at most 16 digits before the point, so that every amount fits a
// SQL numeric(18,2) and a .NET decimal exactly, and an order the API accepts can be carried by
// every message it causes.
struct MoneyLimits {
    static constexpr int kMaxScale = 2;
    static constexpr int kMaxIntegerDigits = 16;
    static constexpr const char* kRule = "at most 2 decimals and at most 16 digits before the point";
};
bool IsMoney(const Decimal& value);

}  // namespace contracts
