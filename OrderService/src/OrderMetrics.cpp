#include "OrderService/OrderMetrics.h"

namespace order_service {

namespace {

constexpr const char* kService = "OrderService";

bool IsFinalState(OrderState state) {
    return state == OrderState::kCompleted || state == OrderState::kFailed;
}

}  // namespace

OrderMetrics::OrderMetrics(metrics::MetricsRegistry& registry, OrderRepository& repository,
                           const TimeoutScheduler& timeouts)
    : finished_(registry.CounterFamily(
          "orders_finished_total", "Orders that reached a final status, by status and by the event that decided it")),
      instance_counts_(repository.CountSagasByState()) {
    auto& instances = registry.GaugeFamily("order_saga_instances", "Stored order saga instances in each state");
    for (OrderState state : {OrderState::kSubmitted, OrderState::kInventoryReserved, OrderState::kFailed}) {
        instance_gauges_[state] = &instances.With({{"service", kService}, {"state", std::string(StateName(state))}});
        CountInstances(state, 0);
    }
    auto& outbox_rows = registry.GaugeFamily("order_outbox_rows", "Messages written to the outbox, not yet confirmed")
                            .With({{"service", kService}});
    auto& outbox_age = registry
                           .GaugeFamily("order_outbox_oldest_age_seconds",
                                        "Age of the oldest message in the outbox (0 when it is empty)")
                           .With({{"service", kService}});
    auto& pending = registry.GaugeFamily("order_timeouts_pending", "Saga timeouts scheduled and not yet fired")
                        .With({{"service", kService}});
    registry.AddCollector([&repository, &timeouts, &outbox_rows, &outbox_age, &pending] {
        const OutboxSummary outbox = repository.SummarizeOutbox();
        outbox_rows.Set(static_cast<double>(outbox.rows));
        double age = 0;
        if (outbox.oldest_written)
            age = std::max(0.0, std::chrono::duration<double>(contracts::UtcNow() - *outbox.oldest_written).count());
        outbox_age.Set(age);
        pending.Set(static_cast<double>(timeouts.PendingCount()));
    });
}

void OrderMetrics::CountInstances(OrderState state, std::int64_t change) {
    const std::int64_t count = instance_counts_[state] += change;
    if (auto gauge = instance_gauges_.find(state); gauge != instance_gauges_.end())
        gauge->second->Set(static_cast<double>(count));
}

void OrderMetrics::Committed(OrderState from, OrderState to, bool row_deleted, OrderEventKind event) {
    if (from != OrderState::kInitial) CountInstances(from, -1);
    // A completed order's row is deleted (finalized): it is no stored instance any more.
    if (!row_deleted) CountInstances(to, +1);
    if (!IsFinalState(to) || IsFinalState(from)) return;
    metrics::Counter*& finished = finished_counters_[{event, to}];
    if (!finished)
        finished = &finished_.With(
            {{"cause", std::string(EventName(event))}, {"service", kService}, {"status", std::string(StateName(to))}});
    finished->Add();
}

}  // namespace order_service
