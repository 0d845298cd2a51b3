// What a service's health answers report and how they are written: the broker connection, each
// receive endpoint's consumer with its kill switch and what keeps its queue from delivering, the
// `_error`/`_skipped` queues the broker refused, and the service's database. OrderService answers them
// on its API port, each worker on its admin port (AdminServer), in the same shape.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "Bus/Bus.h"
#include "Http/HttpMessage.h"
#include "Runtime/StoreHealth.h"

namespace messaging {

// kRefused: the broker refused our topology (a queue exists with other arguments); `detail` says
// what, and the service does not reconnect. kInProcess: there is no broker, the bus is in this
// process (the embedded mode). An endpoint the broker is not delivering to makes the service degraded.
enum class BrokerState { kConnected, kInProcess, kBlocked, kDisconnected, kRefused };
struct HealthReport {
    BrokerState state = BrokerState::kDisconnected;  // the broker connection's
    std::string detail{};                            // why the broker refused
    std::vector<Bus::EndpointHealth> endpoints{};
    // `_error`/`_skipped` queues the broker refused (queue, the broker's reason): degraded, not down.
    std::vector<std::pair<std::string, std::string>> refused_queues{};
    // The service's database, none for a service that keeps none. Busy makes the service degraded;
    // failing makes it unhealthy and not ready: what it is asked to store it cannot.
    std::optional<StoreHealth> database{};

    bool database_failing() const { return database && database->state == StoreState::kFailing; }
};
using HealthProbe = std::function<HealthReport()>;

// The word /health writes for a broker state: "connected", "in-process", "blocked", "disconnected",
// "refused".
const char* BrokerStateName(BrokerState state);

// How a service's store is now (StoreHealth), asked at each health answer and scrape.
using StoreProbe = std::function<StoreHealth()>;

// What `bus` and its transport say now, and what `database` says when the service has one. Loop
// thread (the thread that uses the database's connection too).
HealthReport ReadHealth(Bus& bus, const StoreProbe& database = {});

// The answer to GET or HEAD of
// - /health: the whole report, 200 with "ok" or "degraded" while the service works, 503 while it
//   cannot (the broker away or refusing its topology, the database failing);
// - /health/live: 200 whenever the loop answers at all;
// - /health/ready: 200 once the broker is connected, every endpoint consumes and the database is not
//   failing, else 503 with why, for a load balancer or Kubernetes' readiness probe.
// Another method gets 405; nullopt for any other path.
std::optional<HttpResponse> AnswerHealthRequest(const HttpRequest& request, const HealthProbe& probe);

// The route of the operators' endpoints every service answers (/health, /health/live,
// /health/ready, /metrics) that `path` names, as a literal for HttpResponder::SetRoute; empty for
// any other path.
std::string_view OperatorRouteOf(std::string_view path);

}  // namespace messaging
