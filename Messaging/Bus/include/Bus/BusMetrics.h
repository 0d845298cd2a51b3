// MassTransit 8.5's meter ("MassTransit") as OpenTelemetry's Prometheus exporter writes it, recorded
// by the bus: receive, consume and saga counts, errors, retries, durations and in-progress counts, and
// sends (MassTransit 8.5 counts a publish as a send), with the same names, label names, label values
// and bucket bounds, so that a dashboard built on MassTransit's services reads ours unchanged. Beside
// them, what MassTransit does not tell: messages moved to `_error` and `_skipped`.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "Metrics/MetricsRegistry.h"

namespace messaging {

// Whether a registration is a consumer (counted as messaging_masstransit_consume) or a saga's event
// (messaging_masstransit_saga).
enum class ConsumerKind { kConsumer, kSaga };

// The label MassTransit gives a message type: the type's name without its namespace, a generic's
// arguments appended with '_' ("urn:message:MassTransit:Fault[[Contracts:ProcessPayment]]" ->
// "Fault_ProcessPayment").
std::string MessageTypeLabel(const std::string& urn);
// The same for what is published to an exchange named after its message type, as MassTransit names
// them ("Contracts:OrderSubmitted" -> "OrderSubmitted", "MassTransit:Fault--Contracts:ProcessPayment--"
// -> "Fault_ProcessPayment"); any other exchange name is returned as it is.
std::string MessageTypeLabelOfExchange(const std::string& exchange);
// A .NET-style type name without its namespace, as MassTransit labels consumer and exception types
// ("Inventory.CheckInventoryConsumer" -> "CheckInventoryConsumer").
std::string TypeNameWithoutNamespace(const std::string& type_name);

// Records the instruments. The series a delivery, an attempt or a send is counted in while nothing
// fails are resolved once (ReceiveSeriesOf, ConsumeSeriesOf, SendSeriesOf) and kept by the caller, so
// the hot path adds to a counter it holds; a failure's series, which name the exception, are looked
// up when it happens.
class BusMetrics {
  public:
    // `service` is the value of messaging_masstransit_service (MassTransit writes its process name).
    BusMetrics(metrics::MetricsRegistry& registry, std::string service);

    struct ReceiveSeries {
        std::string queue;
        metrics::Counter* total;
        metrics::Counter* active;
        metrics::Histogram* duration;
    };
    // The series of the deliveries of `queue`; the reference stays valid as long as this object.
    const ReceiveSeries& ReceiveSeriesOf(const std::string& queue);
    // A delivery taken from the queue: counted now, in progress until Received.
    void ReceiveStarted(const ReceiveSeries& series);
    // The delivery settled after `elapsed`; `exception_type` when its body could not be read.
    void Received(const ReceiveSeries& series, std::chrono::steady_clock::duration elapsed,
                  const std::string& exception_type = {});

    struct ConsumeLabels {
        ConsumerKind kind = ConsumerKind::kConsumer;
        std::string queue;
        std::string message_type;   // label, see MessageTypeLabel
        std::string consumer_type;  // label, see TypeNameWithoutNamespace
    };
    struct ConsumeSeries {
        ConsumeLabels labels;
        metrics::Counter* total;
        metrics::Counter* active;
        // A consumer's, made when first recorded: MassTransit's exporter writes neither before then.
        mutable metrics::Counter* retries = nullptr;
        mutable metrics::Histogram* delivery = nullptr;
        metrics::Histogram* duration;
    };
    // The series of one consumer's (or saga event's) attempts on one queue.
    const ConsumeSeries& ConsumeSeriesOf(const ConsumeLabels& labels);
    // An attempt begins: counted, in progress, a retry when `retry_attempt` > 0; for a consumer the
    // time since the message was sent is recorded as its delivery duration.
    void ConsumeStarted(const ConsumeSeries& series, int retry_attempt,
                        std::optional<std::chrono::milliseconds> since_sent);
    // The attempt ended after `elapsed` (a saga's: since the delivery was received, as MassTransit
    // measures it), with `exception_type` when it threw.
    void ConsumeEnded(const ConsumeSeries& series, std::chrono::steady_clock::duration elapsed,
                      const std::string& exception_type = {});

    struct SendSeries {
        std::string exchange;
        std::string message_type;  // label
        metrics::Counter* total;
    };
    // The series of what is sent to `exchange` with the message type `message_type_urn` (empty: the
    // type is read from the exchange's name); after the first call, found without allocating.
    const SendSeries& SendSeriesOf(const std::string& exchange, const std::string& message_type_urn);
    // A message handed to the broker.
    void Sent(const SendSeries& series);
    void SendFailed(const SendSeries& series, const std::string& exception_type);

    // A delivery of `queue` moved to `destination` (its _error or _skipped queue), confirmed.
    void Moved(const std::string& queue, const std::string& destination);
    // Writes the moves of a receive endpoint's queue to `error_queue` and `skipped_queue` as 0 from the
    // start: Prometheus' increase() sees the first move only on a series that was there before it.
    void ExpectMoves(const std::string& queue, const std::string& error_queue, const std::string& skipped_queue);

  private:
    metrics::Labels Scope() const;
    metrics::Labels ReceiveLabels(const std::string& queue, const std::string& exception_type) const;
    metrics::Labels ConsumeLabelsOf(const ConsumeLabels& labels, const std::string& exception_type) const;
    metrics::Labels SendLabels(const std::string& exchange, const std::string& message_type,
                               const std::string& exception_type) const;

    std::string service_;
    metrics::Family<metrics::Counter>& receive_total_;
    metrics::Family<metrics::Counter>& receive_errors_;
    metrics::Family<metrics::Counter>& receive_active_;
    metrics::Family<metrics::Histogram>& receive_duration_;
    metrics::Family<metrics::Counter>& consume_total_;
    metrics::Family<metrics::Counter>& consume_errors_;
    metrics::Family<metrics::Counter>& consume_retries_;
    metrics::Family<metrics::Counter>& consume_active_;
    metrics::Family<metrics::Histogram>& consume_duration_;
    metrics::Family<metrics::Histogram>& delivery_duration_;
    metrics::Family<metrics::Counter>& saga_total_;
    metrics::Family<metrics::Counter>& saga_errors_;
    metrics::Family<metrics::Counter>& saga_active_;
    metrics::Family<metrics::Histogram>& saga_duration_;
    metrics::Family<metrics::Counter>& send_total_;
    metrics::Family<metrics::Counter>& send_errors_;
    metrics::Family<metrics::Counter>& moved_total_;

    // Resolved series; unordered_map keeps its elements in place, so references to them stay valid.
    std::mutex mutex_;
    std::unordered_map<std::string, ReceiveSeries> receive_series_;
    std::unordered_map<std::string, ConsumeSeries> consume_series_;
    std::unordered_map<std::string, std::unordered_map<std::string, SendSeries>> send_series_;
};

}  // namespace messaging
