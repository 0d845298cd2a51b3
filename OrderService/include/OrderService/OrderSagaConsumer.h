// Runs the order saga on the `order-service` endpoint: each consumed event is turned into an
// OrderEvent, the stored instance is loaded, Decide() picks the transition, and the new state, the
// order's outcome and the outgoing messages (outbox) are written in one SQLite transaction; the
// instance remembers the ids of the messages applied to it, so a redelivery changes nothing. The messages go out after
// the commit; their outbox rows go once confirmed.
#pragma once

#include <functional>
#include <string>

#include "Bus/Bus.h"
#include "OrderService/OrderMetrics.h"
#include "OrderService/OrderRepository.h"
#include "OrderService/OrderSaga.h"
#include "OrderService/OutboxRelay.h"
#include "OrderService/TimeoutScheduler.h"

namespace order_service {

class UnhandledEventError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class OrderSagaConsumer {
  public:
    // `metrics`: where committed transitions are counted (none: metrics are off).
    OrderSagaConsumer(OrderRepository& repository, OutboxRelay& outbox, TimeoutScheduler& timeouts, SagaOptions options,
                      OrderMetrics* metrics = nullptr);

    void Register(messaging::ReceiveEndpoint& endpoint);
    void Handle(messaging::ConsumeContext& context, const OrderEvent& event);
    // Re-arms the timeouts stored in the database (after a restart).
    void RestoreTimeouts();
    // Test hook: runs between loading the instance and saving it (to stage a concurrent writer).
    void SetBeforeSaveHook(std::function<void(const OrderSagaInstance&)> hook) { before_save_ = std::move(hook); }

  private:
    OrderRepository& repository_;
    OutboxRelay& outbox_;
    TimeoutScheduler& timeouts_;
    SagaOptions options_;
    OrderMetrics* metrics_;
    std::function<void(const OrderSagaInstance&)> before_save_;
};

}  // namespace order_service
