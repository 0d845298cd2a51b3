#include "Wire/RawJson.h"

#include <cctype>

#include "Contracts/ExactJson.h"
#include "Contracts/Identifiers.h"
#include "Contracts/JsonFields.h"

namespace messaging {
namespace {

const std::string* HeaderText(const MessageProperties& properties, const char* name) {
    const HeaderValue* value = FindHeader(properties.headers, name);
    const auto* text = value ? std::get_if<std::string>(value) : nullptr;
    return text && !text->empty() ? text : nullptr;
}

// An id header (else `fallback`, an AMQP property) as a GUID in MassTransit's "D" form; empty when
// it is absent or not a GUID, as MassTransit reads it: a plain JSON producer may set a message_id
// of its own making, and the message is still readable.
std::string ReadId(const MessageProperties& properties, const char* name, const std::string& fallback = {}) {
    const std::string* text = HeaderText(properties, name);
    const auto guid = contracts::Guid::Parse(text ? *text : fallback);
    return guid ? guid->ToString() : std::string();
}

std::string ReadAddress(const MessageProperties& properties, const char* name) {
    const std::string* text = HeaderText(properties, name);
    return text ? *text : std::string();
}

// MassTransit serializes its host with System.Text.Json's defaults: the envelope's fields, in the
// same order, with PascalCase names.
std::string WriteHostJson(const contracts::HostInfo& host) {
    const contracts::OrderedJson camel_case = contracts::WriteHostInfo(host);
    contracts::OrderedJson json;
    for (const auto& [name, value] : camel_case.items()) {
        std::string pascal = name;
        pascal[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(pascal[0])));
        json[pascal] = value;
    }
    return json.dump(-1, ' ', false, contracts::OrderedJson::error_handler_t::replace);
}

}  // namespace

std::string ContentTypeOf(const MessageProperties& properties) {
    if (!properties.content_type.empty()) return properties.content_type;
    const std::string* header = HeaderText(properties, "Content-Type");
    return header ? *header : std::string();
}

bool IsRawJsonContentType(std::string_view content_type) {
    const std::string_view media = content_type.substr(0, content_type.find(';'));
    std::string_view trimmed = media;
    while (!trimmed.empty() && trimmed.back() == ' ') trimmed.remove_suffix(1);
    return contracts::EqualsIgnoreCase(trimmed, kRawJsonContentType);
}

Envelope ReadRawJson(std::string_view body, const MessageProperties& properties) {
    Envelope envelope;
    envelope.message = contracts::ParseJsonExact(body);  // amounts keep their text
    if (!envelope.message.is_object()) throw EnvelopeError("the raw JSON body is not a JSON object");
    envelope.message_id = ReadId(properties, "MessageId", properties.message_id);
    envelope.correlation_id = ReadId(properties, "CorrelationId", properties.correlation_id);
    envelope.conversation_id = ReadId(properties, "ConversationId");
    envelope.request_id = ReadId(properties, "RequestId");
    envelope.initiator_id = ReadId(properties, "MT-InitiatorId");
    envelope.source_address = ReadAddress(properties, "MT-Source-Address");
    envelope.response_address = ReadAddress(properties, "MT-Response-Address");
    envelope.fault_address = ReadAddress(properties, "MT-Fault-Address");
    if (const std::string* types = HeaderText(properties, "MT-MessageType")) {
        std::string_view rest = *types;
        while (!rest.empty()) {
            const auto semicolon = rest.find(';');
            if (auto type = rest.substr(0, semicolon); !type.empty()) envelope.message_type.emplace_back(type);
            rest = semicolon == std::string_view::npos ? std::string_view() : rest.substr(semicolon + 1);
        }
    }
    if (const std::string* host = HeaderText(properties, "MT-Host-Info"))
        envelope.host = contracts::ReadHostInfo(contracts::Json::parse(*host, nullptr, false));
    // The headers a consumer sees, as MassTransit's raw context copies them: all but the MT- ones and
    // those read above. The broker's own (x-delivery-count, x-death, ...) are left out too: copied
    // onto what the consumer sends, a quorum queue would take them as that message's own.
    for (const auto& [name, value] : properties.headers) {
        if (contracts::StartsWithIgnoreCase(name, "MT-") || contracts::StartsWithIgnoreCase(name, "x-")) continue;
        if (name == "MessageId" || name == "CorrelationId" || name == "ConversationId" || name == "RequestId" ||
            name == "Content-Type")
            continue;
        if (const auto* text = std::get_if<std::string>(&value))
            envelope.headers[name] = *text;
        else if (const auto* number = std::get_if<std::int32_t>(&value))
            envelope.headers[name] = *number;
        else if (const auto* wide = std::get_if<std::int64_t>(&value))
            envelope.headers[name] = *wide;
        else if (const auto* flag = std::get_if<bool>(&value))
            envelope.headers[name] = *flag;
    }
    return envelope;
}

void WriteRawJsonHeaders(const Envelope& envelope, HeaderTable& headers) {
    auto set = [&](const char* name, const std::string& value) {
        if (!value.empty()) headers[name] = value;
    };
    set("MessageId", envelope.message_id);
    set("CorrelationId", envelope.correlation_id);
    set("ConversationId", envelope.conversation_id);
    set("MT-InitiatorId", envelope.initiator_id);
    set("RequestId", envelope.request_id);
    std::string types;
    for (const auto& type : envelope.message_type) types += (types.empty() ? "" : ";") + type;
    set("MT-MessageType", types);
    set("MT-Response-Address", envelope.response_address);
    set("MT-Fault-Address", envelope.fault_address);
    set("MT-Source-Address", envelope.source_address);
    headers["MT-Host-Info"] = WriteHostJson(envelope.host);
}

}  // namespace messaging
