#include "OrderService/OrderSagaConsumer.h"

#include <spdlog/spdlog.h>

namespace order_service {
namespace {

std::string FaultMessage(const std::vector<contracts::ExceptionInfo>& exceptions) {
    return exceptions.empty() ? std::string("unknown error") : exceptions.front().message;
}

}  // namespace

OrderSagaConsumer::OrderSagaConsumer(OrderRepository& repository, OutboxRelay& outbox, TimeoutScheduler& timeouts,
                                     SagaOptions options, OrderMetrics* metrics)
    : repository_(repository), outbox_(outbox), timeouts_(timeouts), options_(std::move(options)), metrics_(metrics) {}

void OrderSagaConsumer::Register(messaging::ReceiveEndpoint& endpoint) {
    using messaging::ConsumeContext;
    using namespace contracts;
    const std::string consumer = "Orders.OrderState";  // MassTransit names a saga's faults after its instance type
    endpoint.CountAsSaga(consumer);                    // in MassTransit's saga instruments, not consume
    endpoint.Handle<OrderSubmitted>(consumer, [this](ConsumeContext& c, const OrderSubmitted& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kOrderSubmitted, .order_id = m.order_id, .submitted = m});
    });
    endpoint.Handle<StockReserved>(consumer, [this](ConsumeContext& c, const StockReserved& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kStockReserved, .order_id = m.order_id});
    });
    endpoint.Handle<StockShortage>(consumer, [this](ConsumeContext& c, const StockShortage& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kStockShortage, .order_id = m.order_id, .reason = m.reason});
    });
    endpoint.Handle<PaymentAccepted>(consumer, [this](ConsumeContext& c, const PaymentAccepted& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kPaymentAccepted,
                             .order_id = m.order_id,
                             .transaction_id = m.transaction_id});
    });
    endpoint.Handle<PaymentFailed>(consumer, [this](ConsumeContext& c, const PaymentFailed& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kPaymentFailed, .order_id = m.order_id, .reason = m.reason});
    });
    endpoint.Handle<OrderTimeoutExpired>(consumer, [this](ConsumeContext& c, const OrderTimeoutExpired& m) {
        std::string token;
        if (const auto* header = contracts::FindField(c.envelope().headers, "MT-Scheduling-TokenId");
            header && header->is_string())
            token = header->get<std::string>();
        Handle(c, OrderEvent{
                      .kind = OrderEventKind::kOrderTimeoutExpired, .order_id = m.order_id, .timeout_token = token});
    });
    endpoint.Handle<StockReleased>(consumer, [this](ConsumeContext& c, const StockReleased& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kStockReleased, .order_id = m.order_id});
    });
    endpoint.Handle<PaymentRefunded>(consumer, [this](ConsumeContext& c, const PaymentRefunded& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kPaymentRefunded,
                             .order_id = m.order_id,
                             .transaction_id = m.transaction_id});
    });
    endpoint.Handle<Fault<CheckInventory>>(consumer, [this](ConsumeContext& c, const Fault<CheckInventory>& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kCheckInventoryFaulted,
                             .order_id = m.message.order_id,
                             .reason = FaultMessage(m.exceptions)});
    });
    endpoint.Handle<Fault<ProcessPayment>>(consumer, [this](ConsumeContext& c, const Fault<ProcessPayment>& m) {
        Handle(c, OrderEvent{.kind = OrderEventKind::kProcessPaymentFaulted,
                             .order_id = m.message.order_id,
                             .reason = FaultMessage(m.exceptions)});
    });
}

void OrderSagaConsumer::Handle(messaging::ConsumeContext& context, const OrderEvent& event) {
    context.AddLogField(contracts::kOrderLogField, event.order_id.str());
    const std::string& message_id = context.envelope().message_id;
    // A MassTransit saga's CorrelationId becomes the initiatorId of what it publishes; ours is the
    // order id, a GUID unless the client chose another id (then there is none to write).
    if (auto guid = contracts::Guid::Parse(event.order_id.str())) context.SetCorrelationId(guid->ToString());
    std::optional<OrderSagaInstance> stored = repository_.LoadSaga(event.order_id);
    OrderSagaInstance instance;
    if (stored) {
        if (!message_id.empty() && stored->HasApplied(message_id)) {
            spdlog::debug("order {}: {} {} was already applied", event.order_id.str(), EventName(event.kind),
                          message_id);
            return;
        }
        instance = std::move(*stored);
    } else if (event.kind == OrderEventKind::kOrderSubmitted) {
        // A finalized (completed) order has no saga row any more, but its outcome is kept.
        if (auto status = repository_.FindOrderStatus(event.order_id); status && IsFinal(*status)) {
            spdlog::info("order {}: OrderSubmitted for a finished order ignored", event.order_id.str());
            return;
        }
        instance.order_id = event.order_id;
    } else {
        // As MassTransit: a non-initiating event with no instance is discarded (acked, not skipped).
        spdlog::info("order {}: {} discarded, no saga instance", event.order_id.str(), EventName(event.kind));
        return;
    }

    const OrderState from = instance.state;
    const auto now = contracts::UtcNow();
    SagaTransition transition = Decide(instance, event, options_, now, contracts::Guid::New().ToString());
    transition.next.RememberApplied(message_id);

    if (transition.disposition == Disposition::kUnhandled)
        throw UnhandledEventError("The " + std::string(EventName(event.kind)) + " event is not handled during the " +
                                  std::string(StateName(from)) + " state for the OrderStateMachine state machine");
    if (transition.disposition == Disposition::kIgnored) {
        spdlog::info("order {}: {} in {} ignored ({})", event.order_id.str(), EventName(event.kind), StateName(from),
                     transition.row);
        return;
    }

    for (const auto& command : transition.commands)
        std::visit(
            [&](const auto& message) {
                // A payment must not be taken after the order's deadline (the timeout the transition
                // just scheduled): the command lives no longer, in the broker (expiration) and for
                // PaymentService, which declines it once its expirationTime has passed.
                if constexpr (std::is_same_v<std::decay_t<decltype(message)>, contracts::ProcessPayment>)
                    context.Publish(message, {.time_to_live = options_.timeout});
                else
                    context.Publish(message);
            },
            command);

    if (before_save_) before_save_(instance);
    // The outbox owns these messages from here: they are stored with the new state and published by
    // the relay once that commits (OutboxRelay.h); the bus acks the event after the commit.
    std::vector<messaging::OutgoingMessage> outgoing = context.TakeOutgoing();
    const std::vector<std::int64_t> sequences =
        repository_.SaveTransition(transition.next, transition.finalize, instance.version, outgoing);
    std::vector<OutboxRelay::StoredRow> outbox_rows;
    outbox_rows.reserve(outgoing.size());
    for (std::size_t i = 0; i < outgoing.size(); ++i) outbox_rows.emplace_back(sequences[i], std::move(outgoing[i]));
    messaging::Completion count_when_stored;
    if (metrics_)
        count_when_stored = [metrics = metrics_, from, to = transition.next.state, row_deleted = transition.finalize,
                             kind = event.kind](const messaging::Status& committed) {
            if (committed.ok()) metrics->Committed(from, to, row_deleted, kind);
        };
    outbox_.PublishAfterCommit(std::move(outbox_rows), std::move(count_when_stored));

    if (transition.timeout == TimeoutChange::kSchedule)
        timeouts_.Schedule(instance.order_id, transition.next.timeout_token, *transition.next.timeout_due_ms);
    else if (transition.timeout == TimeoutChange::kCancel)
        timeouts_.Cancel(instance.order_id);

    spdlog::info("order {}: {} -> {} on {} ({})", event.order_id.str(), StateName(from),
                 StateName(transition.next.state), EventName(event.kind), transition.row);
}

void OrderSagaConsumer::RestoreTimeouts() {
    for (const auto& pending : repository_.PendingTimeouts())
        timeouts_.Schedule(pending.order_id, pending.token, pending.due_ms);
}

}  // namespace order_service
