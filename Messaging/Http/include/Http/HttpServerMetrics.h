// The HTTP server's requests as OpenTelemetry's HTTP semantic conventions name them, written as its
// Prometheus exporter writes ASP.NET Core's: http_server_request_duration_seconds, labelled with the
// method, the route template matched, the status code, the protocol version and the scheme, so a
// dashboard built on .NET services reads ours unchanged.
#pragma once

#include <map>
#include <mutex>
#include <string_view>
#include <tuple>

#include "Metrics/MetricsRegistry.h"

namespace messaging {

class HttpServerMetrics {
  public:
    explicit HttpServerMetrics(metrics::MetricsRegistry& registry);

    // One answered request. `method` as the client sent it (one OpenTelemetry does not know is
    // counted as "_OTHER"); `route` the template it matched ("/order/{orderId}"), empty when none did.
    void Record(std::string_view method, std::string_view route, int status, int minor_version, double seconds);

    // The method's label: the method when it is one of HTTP's, else "_OTHER".
    static std::string_view MethodLabel(std::string_view method);

  private:
    metrics::Family<metrics::Histogram>& duration_;
    // Series found without building labels: the key's views are of static strings (MethodLabel's and
    // the routes handlers name).
    std::mutex mutex_;
    std::map<std::tuple<std::string_view, std::string_view, int, int>, metrics::Histogram*> series_;
};

}  // namespace messaging
