#include "Wire/Faults.h"

namespace messaging {
namespace {

std::string Cut(std::string text) {
    if (text.size() > kMaxFaultHeaderText) text.resize(kMaxFaultHeaderText);
    return text;
}

contracts::OrderedJson IdOrNull(const std::string& id) {
    return id.empty() ? contracts::OrderedJson() : contracts::OrderedJson(id);
}

void StampHostHeaders(HeaderTable& headers, const contracts::HostInfo& host) {
    headers["MT-Host-MachineName"] = host.machine_name;
    headers["MT-Host-ProcessName"] = host.process_name;
    headers["MT-Host-ProcessId"] = std::to_string(host.process_id);
    headers["MT-Host-Assembly"] = host.assembly;
    headers["MT-Host-AssemblyVersion"] = host.assembly_version;
    headers["MT-Host-MassTransitVersion"] = host.mass_transit_version;
    headers["MT-Host-FrameworkVersion"] = host.framework_version;
    headers["MT-Host-OperatingSystemVersion"] = host.operating_system_version;
}

}  // namespace

contracts::OrderedJson WriteFaultBody(const std::string& faulted_message_id, const contracts::ExceptionInfo& exception,
                                      const contracts::HostInfo& host, const std::vector<std::string>& message_types,
                                      contracts::OrderedJson message) {
    contracts::OrderedJson fault;
    fault["faultId"] = contracts::Guid::New().ToString();
    fault["faultedMessageId"] = IdOrNull(faulted_message_id);
    fault["timestamp"] = contracts::FormatIso8601(contracts::UtcNow());
    fault["exceptions"] = contracts::OrderedJson::array({contracts::WriteExceptionInfo(exception)});
    fault["host"] = contracts::WriteHostInfo(host);
    fault["faultMessageTypes"] = message_types;
    fault["message"] = std::move(message);
    return fault;
}

contracts::OrderedJson WriteReceiveFaultBody(const std::string& faulted_message_id,
                                             const contracts::ExceptionInfo& exception, const contracts::HostInfo& host,
                                             const std::string& content_type) {
    contracts::OrderedJson fault;
    fault["faultId"] = contracts::Guid::New().ToString();
    fault["timestamp"] = contracts::FormatIso8601(contracts::UtcNow());
    fault["faultedMessageId"] = IdOrNull(faulted_message_id);
    fault["exceptions"] = contracts::OrderedJson::array({contracts::WriteExceptionInfo(exception)});
    fault["host"] = contracts::WriteHostInfo(host);
    fault["faultMessageTypes"] = nullptr;
    fault["contentType"] = content_type;
    return fault;
}

contracts::OrderedJson MessageAsWritten(const std::string& body, const contracts::Json& parsed) {
    const auto document = contracts::OrderedJson::parse(body, nullptr, false);
    if (document.is_object())
        for (auto it = document.begin(); it != document.end(); ++it)
            if (contracts::EqualsIgnoreCase(it.key(), "message") && it.value().is_object()) return it.value();
    return contracts::OrderedJson::parse(parsed.dump());
}

void StampErrorHeaders(HeaderTable& headers, const ErrorCopyFacts& facts, const contracts::HostInfo& host) {
    headers["MT-Reason"] = std::string("fault");
    headers["MT-Fault-ExceptionType"] = facts.exception_type;
    headers["MT-Fault-InputAddress"] = facts.input_address;
    headers["MT-Fault-Message"] = Cut(facts.exception_message);
    headers["MT-Fault-Timestamp"] = contracts::FormatIso8601(contracts::UtcNow());
    headers["MT-Fault-StackTrace"] = Cut(facts.stack_trace);
    if (!facts.consumer_type.empty()) headers["MT-Fault-ConsumerType"] = facts.consumer_type;
    if (!facts.message_type.empty()) headers["MT-Fault-MessageType"] = facts.message_type;
    if (facts.retry_count > 0) headers["MT-Fault-RetryCount"] = static_cast<std::int32_t>(facts.retry_count);
    StampHostHeaders(headers, host);
}

void StampSkippedHeaders(HeaderTable& headers, const contracts::HostInfo& host) {
    headers["MT-Reason"] = std::string("dead-letter");
    StampHostHeaders(headers, host);
}

}  // namespace messaging
