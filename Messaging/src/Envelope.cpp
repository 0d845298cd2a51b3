#include "Messaging/Envelope.h"

#include <sys/utsname.h>
#include <unistd.h>

namespace messaging {
namespace {

using contracts::FindField;
using contracts::Json;
using contracts::OrderedJson;

OrderedJson NullIfEmpty(const std::string& value) {
    return value.empty() ? OrderedJson() : OrderedJson(value);
}

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

}  // namespace

std::string SerializeEnvelope(const Envelope& envelope, const OrderedJson& message) {
    OrderedJson json;
    json["messageId"] = NullIfEmpty(envelope.message_id);
    json["requestId"] = NullIfEmpty(envelope.request_id);
    json["correlationId"] = NullIfEmpty(envelope.correlation_id);
    json["conversationId"] = NullIfEmpty(envelope.conversation_id);
    json["initiatorId"] = NullIfEmpty(envelope.initiator_id);
    json["sourceAddress"] = NullIfEmpty(envelope.source_address);
    json["destinationAddress"] = NullIfEmpty(envelope.destination_address);
    json["responseAddress"] = NullIfEmpty(envelope.response_address);
    json["faultAddress"] = NullIfEmpty(envelope.fault_address);
    json["messageType"] = envelope.message_type;
    json["message"] = message;
    json["expirationTime"] =
        envelope.expiration_time ? OrderedJson(contracts::FormatIso8601(*envelope.expiration_time)) : OrderedJson();
    json["sentTime"] = contracts::FormatIso8601(envelope.sent_time);
    json["headers"] = envelope.headers.is_object() ? OrderedJson(envelope.headers) : OrderedJson::object();
    json["host"] = contracts::WriteHostInfo(envelope.host);
    return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
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
