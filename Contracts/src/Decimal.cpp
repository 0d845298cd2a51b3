#include "Contracts/Decimal.h"

#include <stdexcept>

namespace contracts {
namespace {

constexpr std::int64_t kPowersOfTen[] = {1,       10,       100,       1000,       10000,        100000,
                                         1000000, 10000000, 100000000, 1000000000, 10000000000LL};

__extension__ using Wide = __int128;  // comparisons across scales cannot overflow in 128 bits

std::int64_t CheckedMultiply(std::int64_t a, std::int64_t b) {
    std::int64_t result = 0;
    if (__builtin_mul_overflow(a, b, &result)) throw std::overflow_error("decimal overflow");
    return result;
}

}  // namespace

std::optional<Decimal> Decimal::Parse(std::string_view text) {
    if (text.empty()) return std::nullopt;
    bool negative = false;
    std::size_t i = 0;
    if (text[0] == '-' || text[0] == '+') {
        negative = text[0] == '-';
        i = 1;
    }
    std::int64_t units = 0;
    int scale = 0;
    int digits = 0;
    bool seen_point = false;
    bool seen_digit = false;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (c == '.') {
            if (seen_point) return std::nullopt;
            seen_point = true;
            continue;
        }
        if (c < '0' || c > '9') return std::nullopt;
        seen_digit = true;
        if (seen_point && ++scale > kMaxScale) return std::nullopt;
        if (units != 0 || c != '0') ++digits;
        if (digits > 18) return std::nullopt;
        units = units * 10 + (c - '0');
    }
    if (!seen_digit || (seen_point && scale == 0)) return std::nullopt;
    return Decimal(negative ? -units : units, scale);
}

Decimal Decimal::FromUnits(std::int64_t units, int scale) {
    if (scale < 0 || scale > kMaxScale) throw std::invalid_argument("decimal scale out of range");
    return Decimal(units, scale);
}

std::string Decimal::ToString() const {
    const bool negative = units_ < 0;
    // Work in unsigned to handle INT64_MIN.
    std::uint64_t magnitude = negative ? 0 - static_cast<std::uint64_t>(units_) : static_cast<std::uint64_t>(units_);
    std::string digits = std::to_string(magnitude);
    if (scale_ > 0) {
        if (digits.size() <= static_cast<std::size_t>(scale_)) digits.insert(0, scale_ + 1 - digits.size(), '0');
        digits.insert(digits.size() - scale_, 1, '.');
    }
    return negative ? "-" + digits : digits;
}

int Decimal::SignificantScale() const {
    int scale = scale_;
    std::int64_t units = units_;
    while (scale > 0 && units % 10 == 0) {
        units /= 10;
        --scale;
    }
    return scale;
}

Decimal Decimal::Rescaled(int scale) const {
    if (scale <= scale_) return *this;
    return Decimal(CheckedMultiply(units_, kPowersOfTen[scale - scale_]), scale);
}

Decimal Decimal::operator+(const Decimal& other) const {
    const int scale = std::max(scale_, other.scale_);
    std::int64_t sum = 0;
    if (__builtin_add_overflow(Rescaled(scale).units_, other.Rescaled(scale).units_, &sum))
        throw std::overflow_error("decimal overflow");
    return Decimal(sum, scale);
}

Decimal Decimal::operator*(std::int64_t factor) const {
    return Decimal(CheckedMultiply(units_, factor), scale_);
}

std::strong_ordering Decimal::operator<=>(const Decimal& other) const {
    const int scale = std::max(scale_, other.scale_);
    const Wide left = static_cast<Wide>(units_) * kPowersOfTen[scale - scale_];
    const Wide right = static_cast<Wide>(other.units_) * kPowersOfTen[scale - other.scale_];
    if (left < right) return std::strong_ordering::less;
    if (left > right) return std::strong_ordering::greater;
    return std::strong_ordering::equal;
}

bool Decimal::operator==(const Decimal& other) const {
    return (*this <=> other) == 0;
}

bool IsMoney(const Decimal& value) {
    if (value.Scale() > MoneyLimits::kMaxScale) return false;
    static_assert(MoneyLimits::kMaxIntegerDigits + MoneyLimits::kMaxScale <= 18);
    const std::int64_t limit = kPowersOfTen[MoneyLimits::kMaxIntegerDigits / 2] *
                               kPowersOfTen[MoneyLimits::kMaxIntegerDigits - MoneyLimits::kMaxIntegerDigits / 2] *
                               kPowersOfTen[value.Scale()];
    return value.Units() < limit && value.Units() > -limit;
}

}  // namespace contracts
