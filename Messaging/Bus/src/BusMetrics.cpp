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

std::string TypeNameWithoutNamespace(const std::string& type_name) {
    return WithoutNamespace(type_name);
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
    out.emplace_back(kConsumerTypeLabel, labels.consumer_type);
    out.emplace_back(kDestinationLabel, EndpointLabel(labels.queue));
    if (!exception_type.empty()) out.emplace_back(kExceptionTypeLabel, exception_type);
    out.emplace_back(kMessageTypeLabel, labels.message_type);
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

const BusMetrics::ReceiveSeries& BusMetrics::ReceiveSeriesOf(const std::string& queue) {
    std::lock_guard lock(mutex_);
    auto it = receive_series_.find(queue);
    if (it != receive_series_.end()) return it->second;
    const metrics::Labels labels = ReceiveLabels(queue, {});
    return receive_series_
        .emplace(queue, ReceiveSeries{.queue = queue,
                                      .total = &receive_total_.With(labels),
                                      .active = &receive_active_.With(labels),
                                      .duration = &receive_duration_.With(labels)})
        .first->second;
}

void BusMetrics::ReceiveStarted(const ReceiveSeries& series) {
    series.total->Add();
    series.active->Add();
}

void BusMetrics::Received(const ReceiveSeries& series, std::chrono::steady_clock::duration elapsed,
                          const std::string& exception_type) {
    if (exception_type.empty()) {
        series.active->Add(-1);
        series.duration->Observe(Milliseconds(elapsed));
        return;
    }
    // As MassTransit: a fault adds the exception's type to the labels the receive then ends with.
    const metrics::Labels labels = ReceiveLabels(series.queue, exception_type);
    receive_errors_.With(labels).Add();
    receive_active_.With(labels).Add(-1);
    receive_duration_.With(labels).Observe(Milliseconds(elapsed));
}

const BusMetrics::ConsumeSeries& BusMetrics::ConsumeSeriesOf(const ConsumeLabels& labels) {
    std::string key = labels.queue + '\x1f' + labels.message_type + '\x1f' + labels.consumer_type;
    std::lock_guard lock(mutex_);
    auto it = consume_series_.find(key);
    if (it != consume_series_.end()) return it->second;
    const metrics::Labels values = ConsumeLabelsOf(labels, {});
    const bool saga = labels.kind == ConsumerKind::kSaga;
    return consume_series_
        .emplace(std::move(key), ConsumeSeries{.labels = labels,
                                               .total = &(saga ? saga_total_ : consume_total_).With(values),
                                               .active = &(saga ? saga_active_ : consume_active_).With(values),
                                               .duration = &(saga ? saga_duration_ : consume_duration_).With(values)})
        .first->second;
}

void BusMetrics::ConsumeStarted(const ConsumeSeries& series, int retry_attempt,
                                std::optional<std::chrono::milliseconds> since_sent) {
    series.total->Add();
    series.active->Add();
    if (series.labels.kind == ConsumerKind::kSaga) return;
    if (retry_attempt > 0) {
        if (!series.retries) series.retries = &consume_retries_.With(ConsumeLabelsOf(series.labels, {}));
        series.retries->Add();
    }
    if (since_sent) {
        if (!series.delivery) series.delivery = &delivery_duration_.With(ConsumeLabelsOf(series.labels, {}));
        series.delivery->Observe(static_cast<double>(std::max<std::int64_t>(since_sent->count(), 0)));
    }
}

void BusMetrics::ConsumeEnded(const ConsumeSeries& series, std::chrono::steady_clock::duration elapsed,
                              const std::string& exception_type) {
    if (exception_type.empty()) {
        series.active->Add(-1);
        series.duration->Observe(Milliseconds(elapsed));
        return;
    }
    const metrics::Labels labels = ConsumeLabelsOf(series.labels, exception_type);
    const bool saga = series.labels.kind == ConsumerKind::kSaga;
    (saga ? saga_errors_ : consume_errors_).With(labels).Add();
    (saga ? saga_active_ : consume_active_).With(labels).Add(-1);
    (saga ? saga_duration_ : consume_duration_).With(labels).Observe(Milliseconds(elapsed));
}

const BusMetrics::SendSeries& BusMetrics::SendSeriesOf(const std::string& exchange,
                                                       const std::string& message_type_urn) {
    std::lock_guard lock(mutex_);
    auto by_exchange = send_series_.find(exchange);
    if (by_exchange == send_series_.end())
        by_exchange = send_series_.emplace(exchange, decltype(send_series_)::mapped_type{}).first;
    auto it = by_exchange->second.find(message_type_urn);
    if (it != by_exchange->second.end()) return it->second;
    std::string label =
        message_type_urn.empty() ? MessageTypeLabelOfExchange(exchange) : MessageTypeLabel(message_type_urn);
    metrics::Counter& total = send_total_.With(SendLabels(exchange, label, {}));
    return by_exchange->second
        .emplace(message_type_urn, SendSeries{.exchange = exchange, .message_type = std::move(label), .total = &total})
        .first->second;
}

void BusMetrics::Sent(const SendSeries& series) {
    series.total->Add();
}

void BusMetrics::SendFailed(const SendSeries& series, const std::string& exception_type) {
    send_errors_.With(SendLabels(series.exchange, series.message_type, exception_type)).Add();
}

void BusMetrics::ExpectMoves(const std::string& queue, const std::string& error_queue,
                             const std::string& skipped_queue) {
    for (const std::string* destination : {&error_queue, &skipped_queue})
        moved_total_.With({{"destination", *destination}, {"queue", queue}, {"service", service_}});
}

void BusMetrics::Moved(const std::string& queue, const std::string& destination) {
    moved_total_.With({{"destination", destination}, {"queue", queue}, {"service", service_}}).Add();
}

}  // namespace messaging
