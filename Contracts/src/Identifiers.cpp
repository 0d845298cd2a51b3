#include "Contracts/Identifiers.h"

#include <cstdio>
#include <ctime>
#include <mutex>
#include <random>
#include <stdexcept>

namespace contracts {
namespace {

int HexValue(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool IsLeapYear(int year) {
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

}  // namespace

std::uint64_t RandomWord() {
    thread_local std::mt19937_64 engine{[] {
        std::random_device device;
        std::seed_seq seed{device(), device(), device(), device(), device(), device()};
        return std::mt19937_64(seed);
    }()};
    return engine();
}

Guid Guid::New() {
    Guid guid;
    for (int half = 0; half < 2; ++half) {
        std::uint64_t word = RandomWord();
        for (int i = 0; i < 8; ++i) guid.bytes_[half * 8 + i] = static_cast<std::uint8_t>(word >> (8 * i));
    }
    guid.bytes_[6] = static_cast<std::uint8_t>((guid.bytes_[6] & 0x0F) | 0x40);  // version 4
    guid.bytes_[8] = static_cast<std::uint8_t>((guid.bytes_[8] & 0x3F) | 0x80);  // RFC 4122 variant
    return guid;
}

std::optional<Guid> Guid::Parse(std::string_view text) {
    if (text.size() == 38 &&
        ((text.front() == '{' && text.back() == '}') || (text.front() == '(' && text.back() == ')')))
        text = text.substr(1, 36);
    const bool hyphenated = text.size() == 36;
    if (!hyphenated && text.size() != 32) return std::nullopt;
    Guid guid;
    std::size_t nibble = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (hyphenated && (i == 8 || i == 13 || i == 18 || i == 23)) {
            if (text[i] != '-') return std::nullopt;
            continue;
        }
        const int value = HexValue(text[i]);
        if (value < 0) return std::nullopt;
        guid.bytes_[nibble / 2] = static_cast<std::uint8_t>(guid.bytes_[nibble / 2] | (value << (nibble % 2 ? 0 : 4)));
        ++nibble;
    }
    return guid;
}

std::string Guid::ToString() const {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (std::size_t i = 0; i < bytes_.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
        out.push_back(kHex[bytes_[i] >> 4]);
        out.push_back(kHex[bytes_[i] & 0x0F]);
    }
    return out;
}

bool Guid::IsEmpty() const {
    for (auto b : bytes_)
        if (b != 0) return false;
    return true;
}

bool IsValidOrderId(std::string_view order_id) {
    if (order_id.empty() || order_id.size() > 64) return false;
    for (char c : order_id) {
        const bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::optional<OrderId> OrderId::Parse(std::string_view text) {
    if (!IsValidOrderId(text)) return std::nullopt;
    return OrderId(std::string(text));
}

OrderId OrderId::New() {
    return OrderId(Guid::New().ToString());
}

OrderId literals::operator""_order_id(const char* text, std::size_t length) {
    auto id = OrderId::Parse(std::string_view(text, length));
    if (!id) throw std::invalid_argument("not an order id: " + std::string(text, length));
    return *id;
}

Timestamp UtcNow() {
    return std::chrono::time_point_cast<std::chrono::microseconds>(std::chrono::system_clock::now());
}

std::string FormatIso8601(Timestamp time) {
    using namespace std::chrono;
    const auto day_point = floor<days>(time);
    const year_month_day ymd{day_point};
    const hh_mm_ss hms{time - day_point};
    // Written digit by digit: every envelope carries a time, and snprintf was a twentieth of
    // OrderService's instructions.
    char text[48];
    char* end = text;
    auto digits = [&end](long long value, int width) {  // `value` >= 0, zero-padded to `width`
        for (int i = width - 1; i >= 0; --i, value /= 10) end[i] = static_cast<char>('0' + value % 10);
        end += width;
    };
    if (const int year = static_cast<int>(ymd.year()); year >= 0 && year <= 9999)
        digits(year, 4);
    else
        end += std::snprintf(text, 16, "%04d", year);
    *end++ = '-';
    digits(static_cast<unsigned>(ymd.month()), 2);
    *end++ = '-';
    digits(static_cast<unsigned>(ymd.day()), 2);
    *end++ = 'T';
    digits(hms.hours().count(), 2);
    *end++ = ':';
    digits(hms.minutes().count(), 2);
    *end++ = ':';
    digits(hms.seconds().count(), 2);
    // .NET writes 100 ns ticks; we hold microseconds, so the seventh digit is always 0 and is trimmed,
    // as are the other trailing zeros.
    if (const auto fraction = hms.subseconds().count(); fraction > 0) {
        *end++ = '.';
        digits(fraction, 6);
        while (end[-1] == '0') --end;
    }
    *end++ = 'Z';
    return std::string(text, end);
}

std::optional<Timestamp> ParseIso8601(std::string_view text) {
    using namespace std::chrono;
    auto number = [&](std::size_t pos, std::size_t len) -> int {
        if (pos + len > text.size()) return -1;
        int value = 0;
        for (std::size_t i = pos; i < pos + len; ++i) {
            if (text[i] < '0' || text[i] > '9') return -1;
            value = value * 10 + (text[i] - '0');
        }
        return value;
    };
    if (text.size() < 19 || text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != ' ') ||
        text[13] != ':' || text[16] != ':')
        return std::nullopt;
    const int y = number(0, 4), mo = number(5, 2), d = number(8, 2), h = number(11, 2), mi = number(14, 2),
              s = number(17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60)
        return std::nullopt;
    static constexpr int kDaysInMonth[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const int month_days = kDaysInMonth[mo - 1] + (mo == 2 && IsLeapYear(y) ? 1 : 0);
    if (d > month_days) return std::nullopt;
    std::size_t pos = 19;
    std::int64_t micros = 0;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        int digits = 0;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
            if (digits < 6) micros = micros * 10 + (text[pos] - '0');
            ++digits;
            ++pos;
        }
        if (digits == 0) return std::nullopt;
        for (int i = digits; i < 6; ++i) micros *= 10;
    }
    int offset_minutes = 0;
    if (pos < text.size()) {
        if (text[pos] == 'Z' && pos + 1 == text.size()) {
            ++pos;
        } else if ((text[pos] == '+' || text[pos] == '-') && pos + 6 == text.size() && text[pos + 3] == ':') {
            const int oh = number(pos + 1, 2), om = number(pos + 4, 2);
            if (oh < 0 || om < 0) return std::nullopt;
            offset_minutes = (oh * 60 + om) * (text[pos] == '-' ? -1 : 1);
            pos += 6;
        } else {
            return std::nullopt;
        }
    }
    const sys_days date = year{y} / month{static_cast<unsigned>(mo)} / day{static_cast<unsigned>(d)};
    Timestamp result = time_point_cast<microseconds>(date) + hours{h} + minutes{mi} + seconds{s} +
                       microseconds{micros} - minutes{offset_minutes};
    return result;
}

std::int64_t ToUnixMillis(Timestamp time) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count();
}

Timestamp FromUnixMillis(std::int64_t millis) {
    return Timestamp{std::chrono::milliseconds{millis}};
}

}  // namespace contracts
