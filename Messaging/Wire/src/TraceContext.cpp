#include "Wire/TraceContext.h"

#include <variant>

#include "Contracts/Identifiers.h"

namespace messaging {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

bool IsLowerHex(std::string_view text) {
    for (char c : text)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

bool IsAllZero(std::string_view text) {
    return text.find_first_not_of('0') == std::string_view::npos;
}

int HexByte(std::string_view two) {
    auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    return nibble(two[0]) * 16 + nibble(two[1]);
}

// Fills out[0, digits) with random lower-case hex digits, never all zero (an all-zero id is invalid).
void FillRandomHex(char* out, std::size_t digits) {
    std::size_t filled = 0;
    while (filled < digits) {
        std::uint64_t word = contracts::RandomWord();
        for (int i = 0; i < 16 && filled < digits; ++i, word >>= 4) out[filled++] = kHexDigits[word & 0xF];
    }
    if (IsAllZero(std::string_view(out, digits))) out[digits - 1] = '1';
}

std::string RandomHex(std::size_t digits) {
    std::string out(digits, '0');
    FillRandomHex(out.data(), digits);
    return out;
}

// "00-<trace id>-<span id>-<flags>".
std::string FormatTraceParent(std::string_view trace_id, std::string_view span_id, std::uint8_t flags) {
    std::string out;
    out.reserve(3 + trace_id.size() + 1 + span_id.size() + 3);
    out += "00-";
    out += trace_id;
    out += '-';
    out += span_id;
    out += '-';
    out += kHexDigits[(flags >> 4) & 0xF];
    out += kHexDigits[flags & 0xF];
    return out;
}

void WriteHeaders(std::string traceparent, const Baggage& baggage, contracts::Json& envelope_headers) {
    envelope_headers[kActivityIdHeader] = std::move(traceparent);
    if (baggage.empty()) return;
    contracts::Json members = contracts::Json::array();
    for (const auto& [key, value] : baggage) members.push_back({{"key", key}, {"value", value}});
    envelope_headers[kActivityBaggageHeader] = std::move(members);
}

// Baggage as MassTransit writes it: [{"key": "k", "value": "v"}, ...], names in any case; members
// without a string key and a non-blank string value are skipped, as MassTransit skips them.
Baggage ReadBaggage(const contracts::Json* header) {
    Baggage baggage;
    if (!header || !header->is_array()) return baggage;
    for (const auto& member : *header) {
        const contracts::Json* key = contracts::FindField(member, "key");
        const contracts::Json* value = contracts::FindField(member, "value");
        if (!key || !value || !key->is_string() || !value->is_string()) continue;
        const auto& text = value->get_ref<const std::string&>();
        if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
        baggage.emplace_back(key->get<std::string>(), text);
    }
    return baggage;
}

std::string_view Trim(std::string_view text) {
    const auto first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) return {};
    const auto last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

std::optional<std::string> PercentDecode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out.push_back(text[i]);
            continue;
        }
        if (i + 2 >= text.size()) return std::nullopt;
        std::string lower{text.substr(i + 1, 2)};
        for (char& c : lower)
            if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
        if (!IsLowerHex(lower)) return std::nullopt;
        out.push_back(static_cast<char>(HexByte(lower)));
        i += 2;
    }
    return out;
}

}  // namespace

std::optional<TraceContext> TraceContext::Parse(std::string_view traceparent) {
    // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 characters.
    constexpr std::size_t kLength = 55;
    if (traceparent.size() < kLength) return std::nullopt;
    const std::string_view version = traceparent.substr(0, 2);
    if (!IsLowerHex(version) || version == "ff") return std::nullopt;
    // Version 00 is exactly these fields; a later version may add fields after another '-'.
    if (version == "00" ? traceparent.size() != kLength : traceparent.size() > kLength && traceparent[kLength] != '-')
        return std::nullopt;
    if (traceparent[2] != '-' || traceparent[35] != '-' || traceparent[52] != '-') return std::nullopt;
    const std::string_view trace_id = traceparent.substr(3, 32);
    const std::string_view span_id = traceparent.substr(36, 16);
    const std::string_view flags = traceparent.substr(53, 2);
    if (!IsLowerHex(trace_id) || !IsLowerHex(span_id) || !IsLowerHex(flags)) return std::nullopt;
    if (IsAllZero(trace_id) || IsAllZero(span_id)) return std::nullopt;
    TraceContext context;
    context.trace_id = trace_id;
    context.span_id = span_id;
    context.flags = static_cast<std::uint8_t>(HexByte(flags));
    return context;
}

TraceContext TraceContext::NewRoot() {
    TraceContext context;
    context.trace_id = RandomHex(32);
    context.span_id = RandomHex(16);
    context.flags = 1;
    return context;
}

TraceContext TraceContext::NewSpan() const {
    TraceContext child = *this;
    child.span_id.resize(16);  // no allocation: 16 digits already, unless this span was never set
    FillRandomHex(child.span_id.data(), child.span_id.size());
    return child;
}

std::string TraceContext::TraceParent() const {
    return FormatTraceParent(trace_id, span_id, flags);
}

TraceContext ReceiveSpan(const HeaderTable& transport_headers, const contracts::Json& envelope_headers) {
    std::optional<TraceContext> parent;
    // Only a string can hold a traceparent; it is parsed where it lies.
    if (const HeaderValue* header = FindHeader(transport_headers, kActivityIdHeader))
        if (const auto* text = std::get_if<std::string>(header)) parent = TraceContext::Parse(*text);
    if (!parent)
        if (const contracts::Json* header = contracts::FindField(envelope_headers, kActivityIdHeader);
            header && header->is_string())
            parent = TraceContext::Parse(header->get_ref<const std::string&>());
    // The parent's ids are moved into the child, which differs only in its span id, drawn into the
    // parent's span id string.
    TraceContext span = parent ? std::move(*parent) : TraceContext::NewRoot();
    if (parent) FillRandomHex(span.span_id.data(), span.span_id.size());  // a parsed span id: 16 digits
    span.baggage = ReadBaggage(contracts::FindField(envelope_headers, kActivityBaggageHeader));
    return span;
}

void WriteTraceHeaders(const TraceContext& span, contracts::Json& envelope_headers) {
    WriteHeaders(span.TraceParent(), span.baggage, envelope_headers);
}

void WriteChildSpanHeaders(const TraceContext& parent, contracts::Json& envelope_headers) {
    char span_id[16];
    FillRandomHex(span_id, sizeof span_id);
    WriteHeaders(FormatTraceParent(parent.trace_id, std::string_view(span_id, sizeof span_id), parent.flags),
                 parent.baggage, envelope_headers);
}

Baggage ParseBaggageHeader(std::string_view header) {
    Baggage baggage;
    while (!header.empty()) {
        const auto comma = header.find(',');
        std::string_view member = header.substr(0, comma);
        header = comma == std::string_view::npos ? std::string_view{} : header.substr(comma + 1);
        member = member.substr(0, member.find(';'));  // properties are not carried
        const auto equals = member.find('=');
        if (equals == std::string_view::npos) continue;
        const std::string_view key = Trim(member.substr(0, equals));
        auto value = PercentDecode(Trim(member.substr(equals + 1)));
        if (key.empty() || !value) continue;
        baggage.emplace_back(std::string(key), std::move(*value));
    }
    return baggage;
}

}  // namespace messaging
