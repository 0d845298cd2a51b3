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

HttpResponse FullReport(const HealthReport& report) {
    HealthAnswer answer = AnswerFor(report.state);
    OrderedJson body;
    body["status"] = answer.status;
    body["broker"] = answer.broker;
    if (!report.detail.empty()) body["error"] = report.detail;
    if (const auto& database = report.database) {
        OrderedJson entry = {{"provider", database->provider}, {"state", StoreStateName(database->state)}};
        if (!database->detail.empty()) entry["error"] = database->detail;
        body["database"] = std::move(entry);
        if (report.database_failing()) {
            // It cannot store what it is asked to: it is not serving.
            answer.serving = false;
            body["status"] = "unhealthy";
        } else if (database->state == StoreState::kBusy && answer.serving) {
            body["status"] = "degraded";
        }
    }
    body["endpoints"] = OrderedJson::array();
    for (const auto& endpoint : report.endpoints) {
        OrderedJson entry = {{"queue", endpoint.queue}, {"consuming", endpoint.consuming}};
        if (endpoint.kill_switch_tripped) entry["killSwitch"] = "tripped";
        if (!endpoint.problem.empty()) entry["error"] = endpoint.problem;
        body["endpoints"].push_back(std::move(entry));
        if (!endpoint.consuming && answer.serving) body["status"] = "degraded";
    }
    if (!report.refused_queues.empty()) {
        // Messages that must move there wait in their queues; everything else goes on.
        body["refusedQueues"] = OrderedJson::array();
        for (const auto& [queue, reason] : report.refused_queues)
            body["refusedQueues"].push_back({{"queue", queue}, {"error", reason}});
        if (answer.serving) body["status"] = "degraded";
    }
    return JsonResponse(answer.serving ? 200 : 503, body);
}

HttpResponse Readiness(const HealthReport& report) {
    std::string why;
    if (!AnswerFor(report.state).serving)
        why = std::string("the broker is ") + AnswerFor(report.state).broker;
    else if (report.database_failing())
        why = "the database is failing: " + report.database->detail;
    for (const auto& endpoint : report.endpoints) {
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

HealthReport ReadHealth(Bus& bus, const StoreProbe& database) {
    const auto& transport = bus.transport();
    HealthReport health{.state = BrokerState::kConnected,
                        .endpoints = bus.EndpointsHealth(),
                        .refused_queues = transport.RefusedOnDemandQueues()};
    if (database) health.database = database();
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
    const HealthReport report = probe();
    return path == "/health" ? FullReport(report) : Readiness(report);
}

}  // namespace messaging
