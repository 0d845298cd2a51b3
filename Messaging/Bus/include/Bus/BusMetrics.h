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
// A consumer type's label: its name without its namespace ("Inventory.CheckInventoryConsumer" ->
// "CheckInventoryConsumer").
std::string ConsumerTypeLabel(const std::string& consumer_type);

class BusMetrics {
  public:
    // `service` is the value of messaging_masstransit_service (MassTransit writes its process name).
    BusMetrics(metrics::MetricsRegistry& registry, std::string service);

    // A delivery taken from `queue`: counted now, in progress until Received.
    void ReceiveStarted(const std::string& queue);
    // The delivery settled after `elapsed`; `exception_type` when its body could not be read.
    void Received(const std::string& queue, std::chrono::steady_clock::duration elapsed,
                  const std::string& exception_type = {});

    struct ConsumeLabels {
        ConsumerKind kind = ConsumerKind::kConsumer;
        const std::string* queue = nullptr;
        const std::string* message_type = nullptr;   // label, see MessageTypeLabel
        const std::string* consumer_type = nullptr;  // label, see ConsumerTypeLabel
    };
    // An attempt begins: counted, in progress, a retry when `retry_attempt` > 0; for a consumer the
    // time since the message was sent is recorded as its delivery duration.
    void ConsumeStarted(const ConsumeLabels& labels, int retry_attempt,
                        std::optional<std::chrono::milliseconds> since_sent);
    // The attempt ended after `elapsed` (a saga's: since the delivery was received, as MassTransit
    // measures it), with `exception_type` when it threw.
    void ConsumeEnded(const ConsumeLabels& labels, std::chrono::steady_clock::duration elapsed,
                      const std::string& exception_type = {});

    // A message handed to the broker for `exchange`; `message_type` is its label.
    void Sent(const std::string& exchange, const std::string& message_type);
    void SendFailed(const std::string& exchange, const std::string& message_type, const std::string& exception_type);

    // A delivery of `queue` moved to `destination` (its _error or _skipped queue), confirmed.
    void Moved(const std::string& queue, const std::string& destination);

  private:
    metrics::Labels Scope() const;
    metrics::Labels ReceiveLabels(const std::string& queue, const std::string& exception_type) const;
    metrics::Labels ConsumeLabelsOf(const ConsumeLabels& labels, const std::string& exception_type) const;
    metrics::Labels SendLabels(const std::string& exchange, const std::string& message_type,
                               const std::string& exception_type) const;
    // The series of `family` for `key` (its label values joined), looked up in the family once and
    // kept: the hot path hashes one string instead of locking a family and comparing label lists.
    template <class Series, class MakeLabels>
    Series& Lookup(metrics::Family<Series>& family, const std::string& key, MakeLabels make_labels);

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

    std::mutex mutex_;
    std::unordered_map<std::string, void*> series_;
};

}  // namespace messaging
