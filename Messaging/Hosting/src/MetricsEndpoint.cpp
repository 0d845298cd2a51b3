#include "Hosting/MetricsEndpoint.h"

#include "Hosting/JsonResponses.h"

namespace messaging {

std::optional<HttpResponse> AnswerMetricsRequest(const HttpRequest& request, const metrics::MetricsRegistry* registry) {
    if (request.path != "/metrics") return std::nullopt;
    if (request.method != "GET" && request.method != "HEAD") return MethodNotAllowed(request, "GET, HEAD");
    if (!registry) return ErrorResponse(404, "not_found", "metrics are off in this service (Metrics.Enabled is false)");
    HttpResponse response;
    response.content_type = metrics::kPrometheusContentType;
    response.body = registry->Render();
    return response;
}

}  // namespace messaging
