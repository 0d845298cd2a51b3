// MassTransit's fault formats in one place: the Fault<T> and ReceiveFault bodies published when a
// consumer gives up or an envelope cannot be read, and the MT-Reason, MT-Fault-* and MT-Host-*
// headers stamped on the copy a receive endpoint moves to its _error or _skipped queue.
#pragma once

#include <string>
#include <vector>

#include "Contracts/JsonFields.h"
#include "Contracts/Messages.h"
#include "Transport/Transport.h"

namespace messaging {

// Long exception messages and stack traces are cut to this many bytes in headers.
inline constexpr std::size_t kMaxFaultHeaderText = 2048;

// Fault<T>: `message` is the consumed message as its sender wrote it (see MessageAsWritten) and
// `message_types` the consumed envelope's messageType list.
contracts::OrderedJson WriteFaultBody(const std::string& faulted_message_id, const contracts::ExceptionInfo& exception,
                                      const contracts::HostInfo& host, const std::vector<std::string>& message_types,
                                      contracts::OrderedJson message);

// MassTransit.ReceiveFault: published when a delivery's envelope cannot be read at all.
contracts::OrderedJson WriteReceiveFaultBody(const std::string& faulted_message_id,
                                             const contracts::ExceptionInfo& exception, const contracts::HostInfo& host,
                                             const std::string& content_type);

// The `message` object of an envelope body with its fields in the order the sender wrote them;
// `parsed` when the body's message cannot be found again.
contracts::OrderedJson MessageAsWritten(const std::string& body, const contracts::Json& parsed);

// What the copy moved to _error says about the failure. `consumer_type` and `message_type` are
// empty when no consumer was reached (the envelope could not be read).
struct ErrorCopyFacts {
    std::string exception_type{};
    std::string exception_message{};
    std::string input_address{};
    std::string stack_trace{};
    std::string consumer_type{};
    std::string message_type{};  // the .NET name, e.g. "Contracts.ProcessPayment"
    int retry_count = 0;         // retries made; written only when positive
};

void StampErrorHeaders(HeaderTable& headers, const ErrorCopyFacts& facts, const contracts::HostInfo& host);
void StampSkippedHeaders(HeaderTable& headers, const contracts::HostInfo& host);

}  // namespace messaging
