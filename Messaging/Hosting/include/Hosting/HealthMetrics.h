// The health answers as Prometheus metrics, read from the same probe /health uses at each scrape: the
// broker connection's state and the time it has blocked publishing, whether each endpoint consumes,
// each kill switch, the `_error` and `_skipped` queues the broker refused, and the database's state.
// MassTransit's meter tells none of these.
#pragma once

#include <string>

#include "Hosting/ServiceHealth.h"
#include "Metrics/MetricsRegistry.h"

namespace messaging {

// Registers the gauges of `bus` and of `database` (when the service has one) on `registry` (none:
// metrics are off, nothing is registered). Both are read whenever the registry renders, so render it
// on the bus's loop thread, where the services answer /metrics.
void AddHealthMetrics(metrics::MetricsRegistry* registry, Bus& bus, StoreProbe database, const std::string& service);

}  // namespace messaging
