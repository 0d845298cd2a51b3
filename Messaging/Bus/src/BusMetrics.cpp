#include "Bus/BusMetrics.h"

namespace messaging {

namespace {

// MassTransit's meter, and the version of MassTransit whose instruments these reproduce: the
// exporter writes them as otel_scope_name and otel_scope_version on every series.
constexpr const char* kMeterName = "MassTransit";
constexpr const char* kMeterVersion = "8.5.12.0";

constexpr const char* kServiceLabel = "messaging_masstransit_service";
constexpr const char* kDestinationLabel = "messaging_masstransit_destination";
constexpr const char* kMessageTypeLabel = "messaging_masstransit_message_type";
constexpr const char* kConsumerTypeLabel = "messaging_masstransit_consumer_type";
constexpr const char* kExceptionTypeLabel = "messaging_masstransit_exception_type";

// What follows the last namespace separator of a .NET-style name ('.', ':' or '+').
std::string WithoutNamespace(const std::string& name) {
    const auto separator = name.find_last_of(".:+");
    return separator == std::string::npos ? name : name.substr(separator + 1);
}

// "Namespace:Name" or "Namespace:Generic[[Namespace:Argument]]" -> "Name" or "Generic_Argument".
std::string TypeLabel(const std::string& type) {
    const auto open = type.find("[[");
    if (open == std::string::npos) return WithoutNamespace(type);
    const auto close = type.rfind("]]");
    const std::string argument =
        type.substr(open + 2, close == std::string::npos || close < open ? std::string::npos : close - open - 2);
    return WithoutNamespace(type.substr(0, open)) + "_" + TypeLabel(argument);
}

// MassTransit's endpoint label: the address's last path segment with '.' written as '_'.
std::string EndpointLabel(const std::string& name) {
    std::string label = name;
    for (char& c : label)
        if (c == '.') c = '_';
    return label;
}

double Milliseconds(std::chrono::steady_clock::duration elapsed) {
    return std::chrono::duration<double, std::milli>(elapsed).count();
}

}  // namespace

std::string MessageTypeLabel(const std::string& urn) {
    static const std::string kPrefix = "urn:message:";
    return TypeLabel(urn.rfind(kPrefix, 0) == 0 ? urn.substr(kPrefix.size()) : urn);
}

std::string MessageTypeLabelOfExchange(const std::string& exchange) {
    // MassTransit's entity name of a generic type: "Namespace:Generic--Namespace:Argument--".
    const auto open = exchange.find("--");
    if (open != std::string::npos) {
        const auto close = exchange.rfind("--");
        const std::string argument = close > open ? exchange.substr(open + 2, close - open - 2) : std::string();
        return WithoutNamespace(exchange.substr(0, open)) + "_" + MessageTypeLabelOfExchange(argument);
    }
    if (exchange.find(':') == std::string::npos) return exchange;
    return WithoutNamespace(exchange);
}

std::string ConsumerTypeLabel(const std::string& consumer_type) {
    return WithoutNamespace(consumer_type);
}

BusMetrics::BusMetrics(metrics::MetricsRegistry& registry, std::string service)
    : service_(std::move(service)),
      receive_total_(registry.CounterFamily("messaging_masstransit_receive_ea_total", "Number of messages received")),
      receive_errors_(
          registry.CounterFamily("messaging_masstransit_receive_errors_ea_total", "Number of messages receive faults")),
      receive_active_(
          registry.CounterFamily("messaging_masstransit_receive_active_ea_total", "Number of messages being received")),
      receive_duration_(registry.HistogramFamily("messaging_masstransit_receive_duration_milliseconds",
                                                 "Elapsed time spent receiving a message, in millis",
                                                 metrics::DefaultBuckets())),
      consume_total_(registry.CounterFamily("messaging_masstransit_consume_ea_total", "Number of messages consumed")),
      consume_errors_(
          registry.CounterFamily("messaging_masstransit_consume_errors_ea_total", "Number of message consume faults")),
      consume_retries_(registry.CounterFamily("messaging_masstransit_consume_retries_ea_total",
                                              "Number of message consume retries")),
      consume_active_(
          registry.CounterFamily("messaging_masstransit_consume_active_ea_total", "Number of consumers in progress")),
      consume_duration_(registry.HistogramFamily("messaging_masstransit_consume_duration_milliseconds",
                                                 "Elapsed time spent consuming a message, in millis",
                                                 metrics::DefaultBuckets())),
      delivery_duration_(registry.HistogramFamily(
          "messaging_masstransit_delivery_duration_milliseconds",
          "Elapsed time between when the message was sent and when it was consumed, in millis.",
          metrics::DefaultBuckets())),
      saga_total_(registry.CounterFamily("messaging_masstransit_saga_ea_total", "Number of sagas executed")),
      saga_errors_(registry.CounterFamily("messaging_masstransit_saga_errors_ea_total", "Number of sagas faults")),
      saga_active_(registry.CounterFamily("messaging_masstransit_saga_active_ea_total", "Number of sagas in progress")),
      saga_duration_(registry.HistogramFamily("messaging_masstransit_saga_duration_milliseconds",
                                              "Elapsed time spent saga processing a message, in millis",
                                              metrics::DefaultBuckets())),
      send_total_(registry.CounterFamily("messaging_masstransit_send_ea_total", "Number of messages sent")),
      send_errors_(
          registry.CounterFamily("messaging_masstransit_send_errors_ea_total", "Number of message send faults")),
      moved_total_(registry.CounterFamily("bus_messages_moved_total",
                                          "Messages moved from a receive endpoint's queue to its _error or "
                                          "_skipped queue, confirmed by the broker")) {}

template <class Series, class MakeLabels>
Series& BusMetrics::Lookup(metrics::Family<Series>& family, const std::string& key, MakeLabels make_labels) {
    std::lock_guard lock(mutex_);
    std::string full_key = family.name();
    full_key.push_back('\x1f');
    full_key += key;
    auto it = series_.find(full_key);
    if (it == series_.end()) it = series_.emplace(std::move(full_key), &family.With(make_labels())).first;
    return *static_cast<Series*>(it->second);
}

metrics::Labels BusMetrics::Scope() const {
    return {{"otel_scope_name", kMeterName}, {"otel_scope_version", kMeterVersion}};
}

// The exporter writes an instrument's attributes in the order of their names.
metrics::Labels BusMetrics::ReceiveLabels(const std::string& queue, const std::string& exception_type) const {
    metrics::Labels labels = Scope();
    labels.emplace_back(kDestinationLabel, EndpointLabel(queue));
    if (!exception_type.empty()) labels.emplace_back(kExceptionTypeLabel, exception_type);
    labels.emplace_back(kServiceLabel, service_);
    return labels;
}

metrics::Labels BusMetrics::ConsumeLabelsOf(const ConsumeLabels& labels, const std::string& exception_type) const {
    metrics::Labels out = Scope();
    out.emplace_back(kConsumerTypeLabel, *labels.consumer_type);
    out.emplace_back(kDestinationLabel, EndpointLabel(*labels.queue));
    if (!exception_type.empty()) out.emplace_back(kExceptionTypeLabel, exception_type);
    out.emplace_back(kMessageTypeLabel, *labels.message_type);
    out.emplace_back(kServiceLabel, service_);
    return out;
}

metrics::Labels BusMetrics::SendLabels(const std::string& exchange, const std::string& message_type,
                                       const std::string& exception_type) const {
    metrics::Labels labels = Scope();
    labels.emplace_back(kDestinationLabel, EndpointLabel(exchange));
    if (!exception_type.empty()) labels.emplace_back(kExceptionTypeLabel, exception_type);
    labels.emplace_back(kMessageTypeLabel, message_type);
    labels.emplace_back(kServiceLabel, service_);
    return labels;
}

void BusMetrics::ReceiveStarted(const std::string& queue) {
    auto labels = [&] { return ReceiveLabels(queue, {}); };
    Lookup(receive_total_, queue, labels).Add();
    Lookup(receive_active_, queue, labels).Add();
}

void BusMetrics::Received(const std::string& queue, std::chrono::steady_clock::duration elapsed,
                          const std::string& exception_type) {
    // As MassTransit: a fault adds the exception's type to the labels the receive then ends with.
    const std::string key = queue + '\x1f' + exception_type;
    auto labels = [&] { return ReceiveLabels(queue, exception_type); };
    if (!exception_type.empty()) Lookup(receive_errors_, key, labels).Add();
    Lookup(receive_active_, key, labels).Add(-1);
    Lookup(receive_duration_, key, labels).Observe(Milliseconds(elapsed));
}

void BusMetrics::ConsumeStarted(const ConsumeLabels& labels, int retry_attempt,
                                std::optional<std::chrono::milliseconds> since_sent) {
    const std::string key = *labels.queue + '\x1f' + *labels.message_type + '\x1f' + *labels.consumer_type;
    auto make = [&] { return ConsumeLabelsOf(labels, {}); };
    if (labels.kind == ConsumerKind::kSaga) {
        Lookup(saga_total_, key, make).Add();
        Lookup(saga_active_, key, make).Add();
        return;
    }
    Lookup(consume_total_, key, make).Add();
    Lookup(consume_active_, key, make).Add();
    if (retry_attempt > 0) Lookup(consume_retries_, key, make).Add();
    if (since_sent)
        Lookup(delivery_duration_, key, make)
            .Observe(static_cast<double>(std::max<std::int64_t>(since_sent->count(), 0)));
}

void BusMetrics::ConsumeEnded(const ConsumeLabels& labels, std::chrono::steady_clock::duration elapsed,
                              const std::string& exception_type) {
    const std::string key =
        *labels.queue + '\x1f' + *labels.message_type + '\x1f' + *labels.consumer_type + '\x1f' + exception_type;
    auto make = [&] { return ConsumeLabelsOf(labels, exception_type); };
    const bool saga = labels.kind == ConsumerKind::kSaga;
    if (!exception_type.empty()) Lookup(saga ? saga_errors_ : consume_errors_, key, make).Add();
    Lookup(saga ? saga_active_ : consume_active_, key, make).Add(-1);
    Lookup(saga ? saga_duration_ : consume_duration_, key, make).Observe(Milliseconds(elapsed));
}

void BusMetrics::Sent(const std::string& exchange, const std::string& message_type) {
    Lookup(send_total_, exchange + '\x1f' + message_type, [&] { return SendLabels(exchange, message_type, {}); }).Add();
}

void BusMetrics::SendFailed(const std::string& exchange, const std::string& message_type,
                            const std::string& exception_type) {
    Lookup(send_errors_, exchange + '\x1f' + message_type + '\x1f' + exception_type, [&] {
        return SendLabels(exchange, message_type, exception_type);
    }).Add();
}

void BusMetrics::Moved(const std::string& queue, const std::string& destination) {
    Lookup(moved_total_, queue + '\x1f' + destination, [&] {
        return metrics::Labels{{"destination", destination}, {"queue", queue}, {"service", service_}};
    }).Add();
}

}  // namespace messaging
