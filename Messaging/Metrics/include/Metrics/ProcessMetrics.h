// The process figures every Prometheus client library exports, read from /proc at each scrape:
// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds.
#pragma once

#include "Metrics/MetricsRegistry.h"

namespace metrics {

// Registers the process figures on `registry`, read afresh whenever it renders.
void AddProcessMetrics(MetricsRegistry& registry);

}  // namespace metrics
