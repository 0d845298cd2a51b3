// A worker's admin HTTP listener (Admin.Host, Admin.Port): GET /health, /health/live,
// /health/ready and /metrics, answered on the loop thread from the worker's bus and metrics, as
// OrderService answers them on its API port. Anything else gets a JSON 404.
#pragma once

#include <memory>

#include "Hosting/MetricsEndpoint.h"
#include "Hosting/ServiceHealth.h"
#include "Hosting/Settings.h"
#include "Http/HttpServer.h"
#include "Runtime/EventLoop.h"

namespace messaging {

class AdminServer {
  public:
    // `metrics`: what /metrics serves and where the admin requests are recorded; none when metrics
    // are off.
    AdminServer(EventLoop& loop, AdminSettings settings, HealthProbe probe, metrics::MetricsRegistry* metrics);
    // Binds and serves; loop thread. Throws when the port cannot be bound. Returns the port.
    int Start();
    // Stops accepting connections (at shutdown: the answers in progress still go out). Loop thread.
    void StopAccepting();
    int port() const { return port_; }

  private:
    void Route(const HttpRequest& request, const HttpResponder& responder);

    EventLoop& loop_;
    AdminSettings settings_;
    HealthProbe probe_;
    metrics::MetricsRegistry* metrics_;
    std::unique_ptr<HttpServer> server_;
    int port_ = 0;
};

}  // namespace messaging
