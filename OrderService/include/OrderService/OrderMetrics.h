// What the order service tells an operator beyond MassTransit's instruments: orders finished, by
// final status and by the event that decided it; saga instances by state; the outbox's depth and the
// age of its oldest row; and the saga timeouts pending.
#pragma once

#include <cstdint>
#include <map>
#include <utility>

#include "Metrics/MetricsRegistry.h"
#include "OrderService/OrderRepository.h"
#include "OrderService/OrderSaga.h"
#include "OrderService/TimeoutScheduler.h"

namespace order_service {

class OrderMetrics {
  public:
    // Registers on `registry`, counting the saga instances already stored. The outbox and the
    // timeouts are read from `repository` and `timeouts` whenever the registry renders, so render it
    // on the loop thread (where OrderService answers /metrics).
    OrderMetrics(metrics::MetricsRegistry& registry, OrderRepository& repository, const TimeoutScheduler& timeouts);

    // A transition on `event` from `from` to `to` has committed; `row_deleted` when it finalized the
    // instance.
    void Committed(OrderState from, OrderState to, bool row_deleted, OrderEventKind event);

  private:
    void CountInstances(OrderState state, std::int64_t change);

    metrics::Family<metrics::Counter>& finished_;
    std::map<OrderState, std::int64_t> instance_counts_;
    // Resolved once, so that a transition only adds: the gauge of each state an instance is stored
    // in, and the counter of each (event, final status) met so far.
    std::map<OrderState, metrics::Gauge*> instance_gauges_;
    std::map<std::pair<OrderEventKind, OrderState>, metrics::Counter*> finished_counters_;
};

}  // namespace order_service
