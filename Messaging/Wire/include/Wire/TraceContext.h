// W3C trace context as MassTransit carries it between services: the traceparent form
// "00-<trace id>-<span id>-<flags>" in the MT-Activity-Id header (envelope and AMQP headers), and the
// baggage as [{"key": ..., "value": ...}] in the envelope's MT-Activity-Correlation-Context header.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "Contracts/JsonFields.h"
#include "Transport/Transport.h"

namespace messaging {

inline constexpr const char* kActivityIdHeader = "MT-Activity-Id";
inline constexpr const char* kActivityBaggageHeader = "MT-Activity-Correlation-Context";

using Baggage = std::vector<std::pair<std::string, std::string>>;

// One span of a trace: the trace it belongs to, its own id, the sampled flag and the baggage that
// travels with the trace.
struct TraceContext {
    std::string trace_id;    // 32 lower-case hex digits, not all zero
    std::string span_id;     // 16 lower-case hex digits, not all zero
    std::uint8_t flags = 1;  // bit 0: sampled
    Baggage baggage;

    // A valid traceparent (version 00, or a later version's first four fields), else nullopt, as
    // W3C asks: upper-case hex, all-zero ids and version ff are refused.
    static std::optional<TraceContext> Parse(std::string_view traceparent);
    // The first span of a new trace, sampled.
    static TraceContext NewRoot();
    // A child span: the same trace, flags and baggage, a new span id.
    TraceContext NewSpan() const;
    std::string TraceParent() const;
};

// The span a consumer works in: a child of the span in the delivery's MT-Activity-Id (its AMQP header,
// as MassTransit reads it, else the envelope's), with the envelope's baggage; a new trace when the
// message carries none or an invalid one.
TraceContext ReceiveSpan(const HeaderTable& transport_headers, const contracts::Json& envelope_headers);

// Writes MT-Activity-Id, and MT-Activity-Correlation-Context when there is baggage, as MassTransit's
// send does: the baggage in the envelope only, since the AMQP headers carry no arrays.
void WriteTraceHeaders(const TraceContext& span, contracts::Json& envelope_headers);
// The same for a new child span of `parent` (as parent.NewSpan() would give), without copying the
// parent: what every message a consumer sends carries.
void WriteChildSpanHeaders(const TraceContext& parent, contracts::Json& envelope_headers);

// A W3C `baggage` HTTP header ("key=value;property,key2=value2"), percent-decoded; members that do
// not parse are skipped, as the format's readers do.
Baggage ParseBaggageHeader(std::string_view header);

}  // namespace messaging
