// The health answers as Prometheus metrics, read from the same probe /health uses at each scrape: the
// broker connection's state and the time it has blocked publishing, whether each endpoint consumes,
// each kill switch, and the `_error` and `_skipped` queues the broker refused. MassTransit's meter
// tells none of these.
#pragma once

#include <string>

#include "Hosting/ServiceHealth.h"
#include "Metrics/MetricsRegistry.h"

namespace messaging {

// Registers the gauges of `bus` on `registry` (none: metrics are off, nothing is registered). The
// bus is read whenever the registry renders, so render it on the bus's loop thread, where the
// services answer /metrics.
void AddHealthMetrics(metrics::MetricsRegistry* registry, Bus& bus, const std::string& service);

}  // namespace messaging
