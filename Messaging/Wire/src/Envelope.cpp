#include "Wire/Envelope.h"

#include <sys/utsname.h>
#include <unistd.h>

#include "Contracts/ExactJson.h"
#include "Wire/TraceContext.h"

namespace messaging {
namespace {

using contracts::FindField;
using contracts::Json;
using contracts::OrderedJson;

std::string ReadId(const Json& root, std::string_view name) {
    const Json* field = FindField(root, name);
    if (!field) return {};
    if (!field->is_string()) throw EnvelopeError("envelope " + std::string(name) + " must be a GUID string");
    const auto& text = field->get_ref<const std::string&>();
    if (text.empty()) return {};
    auto guid = contracts::Guid::Parse(text);
    if (!guid) throw EnvelopeError("envelope " + std::string(name) + " is not a GUID: " + text);
    return guid->ToString();
}

bool IsAbsoluteUri(const std::string& text) {
    const auto colon = text.find(':');
    if (colon == std::string::npos || colon == 0) return false;
    for (std::size_t i = 0; i < colon; ++i) {
        const char c = text[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'));
        if (!ok) return false;
    }
    return true;
}

std::string ReadAddress(const Json& root, std::string_view name) {
    const Json* field = FindField(root, name);
    if (!field) return {};
    if (!field->is_string()) throw EnvelopeError("envelope " + std::string(name) + " must be a URI string");
    std::string text = field->get<std::string>();
    if (!text.empty() && !IsAbsoluteUri(text))
        throw EnvelopeError("envelope " + std::string(name) + " is not an absolute URI: " + text);
    return text;
}

std::optional<contracts::Timestamp> ReadTime(const Json& root, std::string_view name) {
    const Json* field = FindField(root, name);
    if (!field) return std::nullopt;
    if (!field->is_string()) throw EnvelopeError("envelope " + std::string(name) + " must be a date-time string");
    auto time = contracts::ParseIso8601(field->get_ref<const std::string&>());
    if (!time) throw EnvelopeError("envelope " + std::string(name) + " is not an ISO-8601 date-time");
    return time;
}

void AppendNullable(std::string& out, std::string_view name, const std::string& value) {
    out += '"';
    out += name;
    out += "\":";
    if (value.empty())
        out += "null";
    else
        AppendJsonString(out, value);
    out += ',';
}

// Writes `value` compactly at the end of `out`, as dump() would, without the string dump() returns.
template <typename JsonType>
void AppendJson(std::string& out, const JsonType& value) {
    nlohmann::detail::serializer<JsonType> writer(nlohmann::detail::output_adapter<char>(out), ' ',
                                                  nlohmann::json::error_handler_t::replace);
    writer.dump(value, /*pretty_print=*/false, /*ensure_ascii=*/false, /*indent_step=*/0);
}

void AppendHeader(std::string& out, bool& first, const std::string& name, const Json& value) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(out, name);
    out += ':';
    if (value.is_string())
        AppendJsonString(out, value.get_ref<const std::string&>());
    else
        AppendJson(out, value);
}

// The host object is the same in every envelope a process writes: written once per thread and host.
const std::string& HostJson(const contracts::HostInfo& host) {
    thread_local contracts::HostInfo cached_host;
    thread_local std::string cached_json;
    if (cached_json.empty() || !(cached_host == host)) {
        cached_host = host;
        cached_json = contracts::WriteHostInfo(host).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    return cached_json;
}

}  // namespace

// ASCII is escaped here; a string with other bytes goes through nlohmann, which checks its UTF-8.
// One pass: runs of characters that need no escape are copied whole.
void AppendJsonString(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    const std::size_t start = out.size();
    out += '"';
    std::size_t run_start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') continue;
        if (c >= 0x80) {
            out.resize(start);
            out += OrderedJson(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            return;
        }
        out.append(text.data() + run_start, i - run_start);
        run_start = i + 1;
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                out += "\\u00";
                out += kHex[c >> 4];
                out += kHex[c & 0xf];
        }
    }
    out.append(text.data() + run_start, text.size() - run_start);
    out += '"';
}

// Written field by field rather than through a JSON object: the envelope is built for every message
// sent, and the object's copies and ordered inserts were a tenth of OrderService's loop time.
std::string SerializeEnvelope(const Envelope& envelope, const OrderedJson& message) {
    std::string out;
    out.reserve(1024);
    out += '{';
    AppendNullable(out, "messageId", envelope.message_id);
    AppendNullable(out, "requestId", envelope.request_id);
    AppendNullable(out, "correlationId", envelope.correlation_id);
    AppendNullable(out, "conversationId", envelope.conversation_id);
    AppendNullable(out, "initiatorId", envelope.initiator_id);
    AppendNullable(out, "sourceAddress", envelope.source_address);
    AppendNullable(out, "destinationAddress", envelope.destination_address);
    AppendNullable(out, "responseAddress", envelope.response_address);
    AppendNullable(out, "faultAddress", envelope.fault_address);
    out += "\"messageType\":[";
    for (std::size_t i = 0; i < envelope.message_type.size(); ++i) {
        if (i) out += ',';
        AppendJsonString(out, envelope.message_type[i]);
    }
    out += "],\"message\":";
    AppendJson(out, message);
    out += ",\"expirationTime\":";
    if (envelope.expiration_time)
        AppendJsonString(out, contracts::FormatIso8601(*envelope.expiration_time));
    else
        out += "null";
    out += ",\"sentTime\":";
    AppendJsonString(out, contracts::FormatIso8601(envelope.sent_time));
    out += ",\"headers\":";
    out += '{';
    if (envelope.headers.is_object()) {
        // MassTransit sets the trace headers when the send starts, after every other header.
        bool first = true;
        for (auto it = envelope.headers.begin(); it != envelope.headers.end(); ++it)
            if (it.key() != kActivityIdHeader && it.key() != kActivityBaggageHeader)
                AppendHeader(out, first, it.key(), it.value());
        for (const char* name : {kActivityIdHeader, kActivityBaggageHeader})
            if (auto it = envelope.headers.find(name); it != envelope.headers.end())
                AppendHeader(out, first, it.key(), it.value());
    }
    out += '}';
    out += ",\"host\":";
    out += HostJson(envelope.host);
    out += '}';
    return out;
}

Envelope detail::ParseEnvelopeDom(std::string_view body) {
    // Read exactly, so that an amount written as a JSON number keeps its text (ExactJson.h); a
    // fractional number in the headers is then kept as its text too.
    Json root = contracts::ParseJsonExact(body, nullptr, /*ignore_comments=*/true);
    if (root.is_discarded()) throw EnvelopeError("the message body is not valid JSON");
    if (!root.is_object()) throw EnvelopeError("the message body is not a JSON object");

    Envelope envelope;
    envelope.message_id = ReadId(root, "messageId");
    envelope.request_id = ReadId(root, "requestId");
    envelope.correlation_id = ReadId(root, "correlationId");
    envelope.conversation_id = ReadId(root, "conversationId");
    envelope.initiator_id = ReadId(root, "initiatorId");
    envelope.source_address = ReadAddress(root, "sourceAddress");
    envelope.destination_address = ReadAddress(root, "destinationAddress");
    envelope.response_address = ReadAddress(root, "responseAddress");
    envelope.fault_address = ReadAddress(root, "faultAddress");

    const Json* types = FindField(root, "messageType");
    if (!types || !types->is_array() || types->empty()) throw EnvelopeError("envelope messageType is missing");
    for (const auto& type : *types) {
        if (!type.is_string()) throw EnvelopeError("envelope messageType must hold strings");
        envelope.message_type.push_back(type.get<std::string>());
    }
    const Json* message = FindField(root, "message");
    if (!message) throw EnvelopeError("envelope message is missing");
    envelope.message = std::move(*const_cast<Json*>(message));

    envelope.expiration_time = ReadTime(root, "expirationTime");
    envelope.sent_time = ReadTime(root, "sentTime").value_or(contracts::Timestamp{});
    if (const Json* headers = FindField(root, "headers"); headers && headers->is_object()) envelope.headers = *headers;
    if (const Json* host = FindField(root, "host")) envelope.host = contracts::ReadHostInfo(*host);
    return envelope;
}

namespace {

// The top-level fields of an envelope, by their exact camelCase names.
enum class Field {
    kMessageId,
    kRequestId,
    kCorrelationId,
    kConversationId,
    kInitiatorId,
    kSourceAddress,
    kDestinationAddress,
    kResponseAddress,
    kFaultAddress,
    kMessageType,
    kMessage,
    kExpirationTime,
    kSentTime,
    kHeaders,
    kHost,
};

constexpr std::pair<std::string_view, Field> kFields[] = {
    {"messageId", Field::kMessageId},
    {"requestId", Field::kRequestId},
    {"correlationId", Field::kCorrelationId},
    {"conversationId", Field::kConversationId},
    {"initiatorId", Field::kInitiatorId},
    {"sourceAddress", Field::kSourceAddress},
    {"destinationAddress", Field::kDestinationAddress},
    {"responseAddress", Field::kResponseAddress},
    {"faultAddress", Field::kFaultAddress},
    {"messageType", Field::kMessageType},
    {"message", Field::kMessage},
    {"expirationTime", Field::kExpirationTime},
    {"sentTime", Field::kSentTime},
    {"headers", Field::kHeaders},
    {"host", Field::kHost},
};

// The host's text fields, by their exact camelCase names.
constexpr std::pair<std::string_view, std::string contracts::HostInfo::*> kHostTexts[] = {
    {"machineName", &contracts::HostInfo::machine_name},
    {"processName", &contracts::HostInfo::process_name},
    {"assembly", &contracts::HostInfo::assembly},
    {"assemblyVersion", &contracts::HostInfo::assembly_version},
    {"frameworkVersion", &contracts::HostInfo::framework_version},
    {"massTransitVersion", &contracts::HostInfo::mass_transit_version},
    {"operatingSystemVersion", &contracts::HostInfo::operating_system_version},
};

// A cursor over the body. Every reader returns false (or nullopt) as soon as the text leaves the
// shape it handles; the caller then gives the whole body to the DOM reader.
class EnvelopeScanner {
  public:
    explicit EnvelopeScanner(std::string_view body) : p_(body.data()), end_(body.data() + body.size()) {}

    std::optional<Envelope> Scan() {
        Envelope envelope;
        std::uint32_t seen = 0;
        if (!Next('{')) return std::nullopt;
        do {
            const auto name = PlainString();
            if (!name || !Next(':')) return std::nullopt;
            const Field* field = Lookup(*name);
            if (!field) return std::nullopt;
            const auto bit = std::uint32_t{1} << static_cast<int>(*field);
            if (seen & bit) return std::nullopt;  // a repeated name: the DOM reader keeps the last one
            seen |= bit;
            if (!ReadField(*field, envelope)) return std::nullopt;
        } while (Next(','));
        if (!Next('}')) return std::nullopt;
        SkipSpace();
        if (p_ != end_) return std::nullopt;
        const auto required = (std::uint32_t{1} << static_cast<int>(Field::kMessageType)) |
                              (std::uint32_t{1} << static_cast<int>(Field::kMessage));
        if ((seen & required) != required) return std::nullopt;
        return envelope;
    }

  private:
    static const Field* Lookup(std::string_view name) {
        for (const auto& [text, field] : kFields)
            if (text == name) return &field;
        return nullptr;
    }

    void SkipSpace() {
        while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
    }
    bool Next(char c) {
        SkipSpace();
        if (p_ == end_ || *p_ != c) return false;
        ++p_;
        return true;
    }
    bool Peek(char c) {
        SkipSpace();
        return p_ != end_ && *p_ == c;
    }
    bool Null() {
        SkipSpace();
        if (end_ - p_ < 4 || std::string_view(p_, 4) != "null") return false;
        p_ += 4;
        return true;
    }
    // A string of printable ASCII without escapes; its text without the quotes.
    std::optional<std::string_view> PlainString() {
        if (!Next('"')) return std::nullopt;
        const char* start = p_;
        while (p_ != end_) {
            const auto c = static_cast<unsigned char>(*p_);
            if (c == '"') return std::string_view(start, static_cast<std::size_t>(p_++ - start));
            if (c < 0x20 || c >= 0x80 || c == '\\') return std::nullopt;
            ++p_;
        }
        return std::nullopt;
    }
    // An object value's text, brackets balanced outside strings; the JSON parser checks the rest.
    std::optional<std::string_view> ObjectText() {
        if (!Peek('{')) return std::nullopt;
        const char* start = p_;
        int depth = 0;
        while (p_ != end_) {
            const char c = *p_++;
            if (c == '"') {
                while (p_ != end_ && *p_ != '"') {
                    if (*p_ == '\\' && end_ - p_ < 2) return std::nullopt;
                    p_ += *p_ == '\\' ? 2 : 1;
                }
                if (p_ == end_) return std::nullopt;
                ++p_;
            } else if (c == '{' || c == '[') {
                ++depth;
            } else if (c == '}' || c == ']') {
                if (--depth == 0) return std::string_view(start, static_cast<std::size_t>(p_ - start));
            } else if (c == '/') {
                return std::nullopt;  // a comment: left to the DOM reader
            }
        }
        return std::nullopt;
    }
    // kExact: numbers with a fraction are kept as their text (ExactJson.h), as the message's
    // amounts must be; the headers keep JSON's own numbers.
    enum class Numbers { kExact, kAsParsed };
    std::optional<Json> ObjectValue(Numbers numbers) {
        const auto text = ObjectText();
        if (!text) return std::nullopt;
        Json value = numbers == Numbers::kExact ? contracts::ParseJsonExact(*text)
                                                : Json::parse(*text, nullptr, /*allow_exceptions=*/false);
        if (value.is_discarded()) return std::nullopt;
        return value;
    }
    // An object whose values are all plain strings, the usual headers (MT-Activity-Id and a few ids),
    // read without the JSON parser; nullopt for any other shape, which the caller re-reads. A repeated
    // name keeps its last value, as the parser does.
    std::optional<Json> PlainStringObject() {
        if (!Next('{')) return std::nullopt;
        Json object = Json::object();
        if (Next('}')) return object;
        do {
            const auto name = PlainString();
            if (!name || !Next(':')) return std::nullopt;
            const auto value = PlainString();
            if (!value) return std::nullopt;
            object[std::string(*name)] = std::string(*value);
        } while (Next(','));
        if (!Next('}')) return std::nullopt;
        return object;
    }
    // null, or a plain string: "" for null.
    std::optional<std::string_view> NullableString() {
        if (Null()) return std::string_view();
        return PlainString();
    }
    bool ReadId(std::string& out) {
        const auto text = NullableString();
        if (!text) return false;
        if (text->empty()) return true;
        const auto guid = contracts::Guid::Parse(*text);
        if (!guid) return false;
        out = guid->ToString();
        return true;
    }
    bool ReadAddress(std::string& out) {
        const auto text = NullableString();
        if (!text) return false;
        out.assign(*text);
        return out.empty() || IsAbsoluteUri(out);
    }
    bool ReadTime(std::optional<contracts::Timestamp>& out) {
        if (Null()) return true;
        const auto text = PlainString();  // "" is not a time: the DOM reader rejects it
        if (!text) return false;
        out = contracts::ParseIso8601(*text);
        return out.has_value();
    }
    bool ReadMessageType(std::vector<std::string>& out) {
        if (!Next('[')) return false;
        do {
            const auto type = PlainString();
            if (!type) return false;
            out.emplace_back(*type);
        } while (Next(','));
        return Next(']');
    }
    bool ReadHost(contracts::HostInfo& host) {
        if (Null()) return true;
        if (!Next('{')) return false;
        if (Next('}')) return true;
        std::uint32_t seen = 0;
        do {
            const auto name = PlainString();
            if (!name || !Next(':')) return false;
            std::string* text = nullptr;
            int bit = 0;
            if (*name == "processId") {
                bit = 1;
                if (Null()) {
                    host.process_id = 0;
                } else if (!Integer(host.process_id)) {
                    return false;
                }
            } else {
                for (std::size_t i = 0; i < std::size(kHostTexts); ++i)
                    if (kHostTexts[i].first == *name) {
                        text = &(host.*kHostTexts[i].second);
                        bit = static_cast<int>(i) + 2;
                    }
                if (!text) return false;
                const auto value = NullableString();
                if (!value) return false;
                text->assign(*value);
            }
            if (seen & (std::uint32_t{1} << bit)) return false;
            seen |= std::uint32_t{1} << bit;
        } while (Next(','));
        return Next('}');
    }
    // A JSON integer of at most 18 digits (so it fits), without fraction or exponent.
    bool Integer(std::int64_t& out) {
        SkipSpace();
        const bool negative = p_ != end_ && *p_ == '-';
        if (negative) ++p_;
        const char* digits = p_;
        std::int64_t value = 0;
        while (p_ != end_ && *p_ >= '0' && *p_ <= '9') {
            if (p_ - digits == 18) return false;  // a 19th digit could overflow: the DOM reader decides
            value = value * 10 + (*p_++ - '0');
        }
        const auto count = p_ - digits;
        if (count == 0 || (*digits == '0' && count > 1)) return false;
        if (p_ != end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return false;
        out = negative ? -value : value;
        return true;
    }

    bool ReadField(Field field, Envelope& envelope) {
        switch (field) {
            case Field::kMessageId:
                return ReadId(envelope.message_id);
            case Field::kRequestId:
                return ReadId(envelope.request_id);
            case Field::kCorrelationId:
                return ReadId(envelope.correlation_id);
            case Field::kConversationId:
                return ReadId(envelope.conversation_id);
            case Field::kInitiatorId:
                return ReadId(envelope.initiator_id);
            case Field::kSourceAddress:
                return ReadAddress(envelope.source_address);
            case Field::kDestinationAddress:
                return ReadAddress(envelope.destination_address);
            case Field::kResponseAddress:
                return ReadAddress(envelope.response_address);
            case Field::kFaultAddress:
                return ReadAddress(envelope.fault_address);
            case Field::kMessageType:
                return ReadMessageType(envelope.message_type);
            case Field::kMessage: {
                auto message = ObjectValue(Numbers::kExact);
                if (!message) return false;
                envelope.message = std::move(*message);
                return true;
            }
            case Field::kExpirationTime:
                return ReadTime(envelope.expiration_time);
            case Field::kSentTime: {
                std::optional<contracts::Timestamp> sent;
                if (!ReadTime(sent)) return false;
                envelope.sent_time = sent.value_or(contracts::Timestamp{});
                return true;
            }
            case Field::kHeaders: {
                if (Null()) return true;
                const char* start = p_;
                if (auto headers = PlainStringObject()) {
                    envelope.headers = std::move(*headers);
                    return true;
                }
                p_ = start;
                auto headers = ObjectValue(Numbers::kAsParsed);
                if (!headers) return false;
                envelope.headers = std::move(*headers);
                return true;
            }
            case Field::kHost:
                return ReadHost(envelope.host);
        }
        return false;
    }

    const char* p_;
    const char* end_;
};

}  // namespace

std::optional<Envelope> detail::ScanEnvelope(std::string_view body) {
    return EnvelopeScanner(body).Scan();
}

// Every service reads one envelope per message, so the common shape goes through the one-pass
// scanner; anything it does not recognise is read through a JSON document (docs/performance.md has
// the comparison).
Envelope ParseEnvelope(std::string_view body) {
    if (auto envelope = detail::ScanEnvelope(body)) return std::move(*envelope);
    return detail::ParseEnvelopeDom(body);
}

contracts::HostInfo CurrentHostInfo(const std::string& service_name) {
    contracts::HostInfo host;
    char name[256] = {};
    gethostname(name, sizeof name - 1);
    host.machine_name = name;
    host.process_name = service_name;
    host.process_id = getpid();
    host.assembly = service_name;
    host.assembly_version = "0.1.0.0";
    host.framework_version = "C++20 (g++ " __VERSION__ ")";
    // The MassTransit wire version this implementation follows.
    host.mass_transit_version = "8.5.8.0";
    utsname uts{};
    if (uname(&uts) == 0) host.operating_system_version = std::string("Unix ") + uts.release;
    return host;
}

}  // namespace messaging
