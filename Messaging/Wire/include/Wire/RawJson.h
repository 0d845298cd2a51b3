// MassTransit's raw JSON format (UseRawJsonSerializer): the body is the message object alone, sent as
// application/json, and what the envelope would carry travels in AMQP headers (MessageId,
// CorrelationId, ConversationId, RequestId, MT-InitiatorId, MT-MessageType, the addresses, MT-Host-Info).
#pragma once

#include <string>
#include <string_view>

#include "Transport/Transport.h"
#include "Wire/Envelope.h"

namespace messaging {

inline constexpr const char* kRawJsonContentType = "application/json";

// The content type a message declares: its content_type property, else a Content-Type header, as
// MassTransit reads it; empty when it declares none.
std::string ContentTypeOf(const MessageProperties& properties);
bool IsRawJsonContentType(std::string_view content_type);  // application/json, any parameters

// Reads a raw JSON message as an envelope: the body is the message, and the ids, addresses, message
// types and host come from the headers (ids also from the message_id and correlation_id properties;
// an id that is not a GUID is left empty). Throws EnvelopeError when the body is not a JSON object.
Envelope ReadRawJson(std::string_view body, const MessageProperties& properties);

// Writes `envelope`'s ids, addresses, message types and host into `headers` as MassTransit's raw
// serializer does (with AddTransportHeaders, its default); fields that are empty are left out.
void WriteRawJsonHeaders(const Envelope& envelope, HeaderTable& headers);

}  // namespace messaging
