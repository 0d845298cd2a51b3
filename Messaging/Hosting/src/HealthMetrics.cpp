#include "Hosting/HealthMetrics.h"

namespace messaging {

void AddHealthMetrics(metrics::MetricsRegistry* registry_or_none, Bus& bus, StoreProbe database,
                      const std::string& service) {
    if (!registry_or_none) return;
    metrics::MetricsRegistry& registry = *registry_or_none;
    const bool has_database = static_cast<bool>(database);
    HealthProbe probe = [&bus, database = std::move(database)] { return ReadHealth(bus, database); };
    auto& state = registry.GaugeFamily("bus_broker_state",
                                       "The broker connection's state: 1 for the state it is in, 0 for the others");
    auto& consuming = registry.GaugeFamily("bus_endpoint_consuming",
                                           "1 while the broker delivers to the receive endpoint's consumer, else 0");
    auto& tripped = registry.GaugeFamily("bus_endpoint_kill_switch_tripped",
                                         "1 while the endpoint's kill switch holds it stopped, else 0");
    auto& refused =
        registry
            .GaugeFamily("bus_refused_queues", "_error and _skipped queues the broker refused to declare as configured")
            .With({{"service", service}});
    auto& blocked = registry
                        .CounterFamily("bus_broker_blocked_seconds_total",
                                       "Time the broker has blocked this service's publishing (a memory or disk alarm)")
                        .With({{"service", service}});
    auto* database_state =
        has_database ? &registry.GaugeFamily("db_state",
                                             "The database's state as its statements last found it (ok, busy: another "
                                             "writer holds it, failing): 1 for the state it is in, 0 for the others")
                     : nullptr;
    registry.AddCollector(
        [&state, &consuming, &tripped, &refused, &blocked, &bus, database_state, probe = std::move(probe), service] {
            const HealthReport health = probe();
            for (BrokerState each : {BrokerState::kConnected, BrokerState::kInProcess, BrokerState::kBlocked,
                                     BrokerState::kDisconnected, BrokerState::kRefused})
                state.With({{"service", service}, {"state", BrokerStateName(each)}}).Set(each == health.state ? 1 : 0);
            for (const auto& endpoint : health.endpoints) {
                const metrics::Labels labels{{"queue", endpoint.queue}, {"service", service}};
                consuming.With(labels).Set(endpoint.consuming ? 1 : 0);
                tripped.With(labels).Set(endpoint.kill_switch_tripped ? 1 : 0);
            }
            refused.Set(static_cast<double>(health.refused_queues.size()));
            blocked.SetTotal(std::chrono::duration<double>(bus.transport().PublishingBlockedTime()).count());
            if (database_state && health.database) {
                for (StoreState each : {StoreState::kOk, StoreState::kBusy, StoreState::kFailing})
                    database_state
                        ->With({{"provider", health.database->provider},
                                {"service", service},
                                {"state", StoreStateName(each)}})
                        .Set(each == health.database->state ? 1 : 0);
            }
        });
}

}  // namespace messaging
