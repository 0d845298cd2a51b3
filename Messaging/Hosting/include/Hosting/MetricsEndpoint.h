// The /metrics answer every service gives (OrderService on its API port, each worker on its admin
// port): the service's metrics in Prometheus' text format, for a Prometheus server to scrape.
#pragma once

#include <optional>

#include "Http/HttpMessage.h"
#include "Metrics/MetricsRegistry.h"

namespace messaging {

// GET or HEAD /metrics: 200 with `registry` rendered, or 404 when metrics are off (no registry,
// Metrics.Enabled false); another method gets 405. nullopt for any other path.
std::optional<HttpResponse> AnswerMetricsRequest(const HttpRequest& request, const metrics::MetricsRegistry* registry);

}  // namespace messaging
