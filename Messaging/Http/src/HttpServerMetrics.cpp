#include "Http/HttpServerMetrics.h"

#include <array>
#include <string>

namespace messaging {

HttpServerMetrics::HttpServerMetrics(metrics::MetricsRegistry& registry)
    : duration_(registry.HistogramFamily("http_server_request_duration_seconds", "Duration of HTTP server requests.",
                                         // OpenTelemetry's advised bounds for http.server.request.duration.
                                         {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10})) {
}

std::string_view HttpServerMetrics::MethodLabel(std::string_view method) {
    static constexpr std::array<std::string_view, 9> kKnown = {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS",
                                                               "PATCH",   "POST",   "PUT", "TRACE"};
    for (std::string_view known : kKnown)
        if (method == known) return known;
    return "_OTHER";
}

void HttpServerMetrics::Record(std::string_view method, std::string_view route, int status, int minor_version,
                               double seconds) {
    const std::string_view method_label = MethodLabel(method);
    metrics::Histogram* series = nullptr;
    {
        std::lock_guard lock(mutex_);
        metrics::Histogram*& found = series_[{method_label, route, status, minor_version}];
        if (!found) {
            // The exporter writes attributes in the order of their names.
            metrics::Labels labels{{"http_request_method", std::string(method_label)},
                                   {"http_response_status_code", std::to_string(status)}};
            if (!route.empty()) labels.emplace_back("http_route", std::string(route));
            labels.emplace_back("network_protocol_version", minor_version == 0 ? "1.0" : "1.1");
            labels.emplace_back("url_scheme", "http");
            found = &duration_.With(labels);
        }
        series = found;
    }
    series->Observe(seconds);
}

}  // namespace messaging
