#include "Hosting/HealthMetrics.h"

namespace messaging {

void AddHealthMetrics(metrics::MetricsRegistry* registry_or_none, Bus& bus, const std::string& service) {
    if (!registry_or_none) return;
    metrics::MetricsRegistry& registry = *registry_or_none;
    HealthProbe probe = [&bus] { return ReadBrokerHealth(bus); };
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
    registry.AddCollector([&state, &consuming, &tripped, &refused, &blocked, &bus, probe = std::move(probe), service] {
        const BrokerHealth health = probe();
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
    });
}

}  // namespace messaging
