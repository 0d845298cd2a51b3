#include "Hosting/ServiceHealth.h"

#include "Hosting/JsonResponses.h"

namespace messaging {
namespace {

using contracts::OrderedJson;

// What /health answers for a broker state: its status word, the broker's, and whether the service
// works (200) or not (503). Blocked by an alarm, work goes on: publishes wait until it clears.
struct HealthAnswer {
    const char* status;
    const char* broker;
    bool serving;
};

HealthAnswer AnswerFor(BrokerState state) {
    switch (state) {
        case BrokerState::kConnected:
            return {"ok", "connected", true};
        case BrokerState::kInProcess:
            return {"ok", "in-process", true};
        case BrokerState::kBlocked:
            return {"degraded", "blocked", true};
        case BrokerState::kDisconnected:
            return {"degraded", "disconnected", false};
        case BrokerState::kRefused:
            return {"unhealthy", "refused", false};
    }
    return {"unhealthy", "unknown", false};
}

}  // namespace

const char* BrokerStateName(BrokerState state) {
    return AnswerFor(state).broker;
}

namespace {

HttpResponse HealthReport(const BrokerHealth& broker) {
    const HealthAnswer answer = AnswerFor(broker.state);
    OrderedJson body;
    body["status"] = answer.status;
    body["broker"] = answer.broker;
    if (!broker.detail.empty()) body["error"] = broker.detail;
    body["endpoints"] = OrderedJson::array();
    for (const auto& endpoint : broker.endpoints) {
        OrderedJson entry = {{"queue", endpoint.queue}, {"consuming", endpoint.consuming}};
        if (endpoint.kill_switch_tripped) entry["killSwitch"] = "tripped";
        if (!endpoint.problem.empty()) entry["error"] = endpoint.problem;
        body["endpoints"].push_back(std::move(entry));
        if (!endpoint.consuming && answer.serving) body["status"] = "degraded";
    }
    if (!broker.refused_queues.empty()) {
        // Messages that must move there wait in their queues; everything else goes on.
        body["refusedQueues"] = OrderedJson::array();
        for (const auto& [queue, reason] : broker.refused_queues)
            body["refusedQueues"].push_back({{"queue", queue}, {"error", reason}});
        if (answer.serving) body["status"] = "degraded";
    }
    return JsonResponse(answer.serving ? 200 : 503, body);
}

HttpResponse Readiness(const BrokerHealth& broker) {
    std::string why;
    if (!AnswerFor(broker.state).serving) why = std::string("the broker is ") + AnswerFor(broker.state).broker;
    for (const auto& endpoint : broker.endpoints) {
        if (!why.empty() || endpoint.consuming) continue;
        why = "the endpoint " + endpoint.queue;
        if (endpoint.kill_switch_tripped)
            why += " is stopped by its kill switch";
        else
            why += " is not consuming" + (endpoint.problem.empty() ? "" : ": " + endpoint.problem);
    }
    if (why.empty()) return JsonResponse(200, OrderedJson{{"status", "ready"}});
    return JsonResponse(503, OrderedJson{{"status", "not ready"}, {"reason", why}});
}

}  // namespace

BrokerHealth ReadBrokerHealth(Bus& bus) {
    const auto& transport = bus.transport();
    BrokerHealth health{.state = BrokerState::kConnected,
                        .endpoints = bus.EndpointsHealth(),
                        .refused_queues = transport.RefusedOnDemandQueues()};
    if (auto refusal = transport.TopologyRefusal(); !refusal.ok()) {
        health.state = BrokerState::kRefused;
        health.detail = refusal.message();
    } else if (!transport.IsConnected() || bus.stopping()) {
        health.state = BrokerState::kDisconnected;
    } else if (transport.IsPublishingBlocked()) {
        health.state = BrokerState::kBlocked;
    } else if (transport.IsInProcess()) {
        health.state = BrokerState::kInProcess;
    }
    return health;
}

std::string_view OperatorRouteOf(std::string_view path) {
    for (std::string_view route : {"/health", "/health/live", "/health/ready", "/metrics"})
        if (path == route) return route;
    return {};
}

std::optional<HttpResponse> AnswerHealthRequest(const HttpRequest& request, const HealthProbe& probe) {
    const std::string& path = request.path;
    if (path != "/health" && path != "/health/live" && path != "/health/ready") return std::nullopt;
    if (request.method != "GET" && request.method != "HEAD") return MethodNotAllowed(request, "GET");
    if (path == "/health/live") return JsonResponse(200, OrderedJson{{"status", "live"}});
    const BrokerHealth broker = probe();
    return path == "/health" ? HealthReport(broker) : Readiness(broker);
}

}  // namespace messaging
