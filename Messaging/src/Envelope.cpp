#include "Messaging/Envelope.h"

#include <sys/utsname.h>
#include <unistd.h>

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

// JSON text exactly as nlohmann's dump() (ensure_ascii off, invalid UTF-8 replaced) writes it. ASCII
// is escaped here; a string with other bytes goes through nlohmann, which checks its UTF-8.
void AppendString(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (unsigned char c : text) {
        if (c >= 0x80) {
            out += OrderedJson(std::string(text)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            return;
        }
    }
    out += '"';
    for (unsigned char c : text) {
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
                if (c < 0x20) {
                    out += "\\u00";
                    out += kHex[c >> 4];
                    out += kHex[c & 0xf];
                } else {
                    out += static_cast<char>(c);
                }
        }
    }
    out += '"';
}

void AppendNullable(std::string& out, std::string_view name, const std::string& value) {
    out += '"';
    out += name;
    out += "\":";
    if (value.empty())
        out += "null";
    else
        AppendString(out, value);
    out += ',';
}

void AppendJson(std::string& out, const OrderedJson& value) {
    out += value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
        AppendString(out, envelope.message_type[i]);
    }
    out += "],\"message\":";
    AppendJson(out, message);
    out += ",\"expirationTime\":";
    if (envelope.expiration_time)
        AppendString(out, contracts::FormatIso8601(*envelope.expiration_time));
    else
        out += "null";
    out += ",\"sentTime\":";
    AppendString(out, contracts::FormatIso8601(envelope.sent_time));
    out += ",\"headers\":";
    if (envelope.headers.is_object() && !envelope.headers.empty())
        AppendJson(out, OrderedJson(envelope.headers));
    else
        out += "{}";
    out += ",\"host\":";
    out += HostJson(envelope.host);
    out += '}';
    return out;
}

Envelope ParseEnvelope(std::string_view body) {
    Json root = Json::parse(body, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
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
