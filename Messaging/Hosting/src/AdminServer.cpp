#include "Hosting/AdminServer.h"

#include <spdlog/spdlog.h>

#include "Hosting/JsonResponses.h"

namespace messaging {

AdminServer::AdminServer(EventLoop& loop, AdminSettings settings, HealthProbe probe, metrics::MetricsRegistry* metrics)
    : loop_(loop), settings_(std::move(settings)), probe_(std::move(probe)), metrics_(metrics) {}

int AdminServer::Start() {
    HttpServerOptions options;
    options.host = settings_.host;
    options.port = settings_.port;
    // Health checks are small and few: a modest share, so that the admin port cannot hold many sockets.
    options.max_connections = 64;
    options.max_connections_per_client = 16;
    options.metrics = metrics_;
    server_ = std::make_unique<HttpServer>(
        loop_, options, [this](HttpRequest request, HttpResponder responder) { Route(request, responder); },
        ServerErrorResponse);
    port_ = server_->Listen();
    spdlog::info("admin HTTP listening on http://{}:{} (GET /health, /health/live, /health/ready, /metrics)",
                 settings_.host, port_);
    return port_;
}

void AdminServer::StopAccepting() {
    if (server_) server_->StopAccepting();
}

void AdminServer::Route(const HttpRequest& request, const HttpResponder& responder) {
    responder.SetRoute(OperatorRouteOf(request.path));
    if (auto answer = AnswerHealthRequest(request, probe_)) return responder.Send(std::move(*answer));
    if (auto answer = AnswerMetricsRequest(request, metrics_)) return responder.Send(std::move(*answer));
    responder.Send(ErrorResponse(404, "not_found", "no route for " + request.method + " " + request.path));
}

}  // namespace messaging
