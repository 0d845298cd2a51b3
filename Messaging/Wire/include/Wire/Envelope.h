// The MassTransit JSON envelope (application/vnd.masstransit+json): ids, addresses, messageType
// URNs, the message, times, headers and host. Written with camelCase names and nulls for unused
// fields; read tolerantly (any property case, GUIDs in N/D/B/P form, unknown fields ignored).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "Contracts/Identifiers.h"
#include "Contracts/JsonFields.h"
#include "Contracts/Messages.h"

namespace messaging {

inline constexpr const char* kEnvelopeContentType = "application/vnd.masstransit+json";

class EnvelopeError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// Unused ids and addresses are empty strings and are written as null.
struct Envelope {
    std::string message_id;
    std::string request_id;
    std::string correlation_id;
    std::string conversation_id;
    std::string initiator_id;
    std::string source_address;
    std::string destination_address;
    std::string response_address;
    std::string fault_address;
    std::vector<std::string> message_type;
    contracts::Json message;  // as read; on write the caller passes an ordered object
    std::optional<contracts::Timestamp> expiration_time;
    contracts::Timestamp sent_time{};
    contracts::Json headers = contracts::Json::object();
    contracts::HostInfo host;
};

// Appends `text` as a JSON string exactly as nlohmann's dump() writes it (ensure_ascii off, invalid
// UTF-8 replaced), for JSON written field by field.
void AppendJsonString(std::string& out, std::string_view text);

// Writes the envelope with `message` as its message object; envelope.message is ignored.
std::string SerializeEnvelope(const Envelope& envelope, const contracts::OrderedJson& message);
// Throws EnvelopeError for malformed JSON, a missing messageType, a non-GUID id or a relative address.
// Envelopes as MassTransit and this library write them take detail::ScanEnvelope; any other body is
// read by detail::ParseEnvelopeDom, with the same result for every input.
Envelope ParseEnvelope(std::string_view body);

namespace detail {
// The fast reader: one pass over envelopes whose top level uses the exact camelCase names, each at
// most once, with strings free of escapes and non-ASCII bytes; only message and headers go through a
// JSON parser. Returns nullopt for every other body, including each one ParseEnvelopeDom rejects.
std::optional<Envelope> ScanEnvelope(std::string_view body);
// The general reader: the whole body as a JSON document, names matched in any case.
Envelope ParseEnvelopeDom(std::string_view body);
}  // namespace detail

// The host of this process, written into every envelope and fault.
contracts::HostInfo CurrentHostInfo(const std::string& service_name);

}  // namespace messaging
