#include "OrderService/OrderSubmission.h"

#include <spdlog/spdlog.h>

namespace order_service {

bool IsSameOrder(const OrderRecord& stored, const NewOrder& order) {
    if (stored.customer_number != order.customer_number || !(stored.total_amount == order.total_amount) ||
        stored.items.size() != order.items.size())
        return false;
    for (std::size_t i = 0; i < order.items.size(); ++i) {
        const auto& a = stored.items[i];
        const auto& b = order.items[i];
        if (a.sku != b.sku || a.quantity != b.quantity || !(a.unit_price == b.unit_price)) return false;
    }
    return true;
}

void OrderSubmission::Submit(const NewOrder& order, const messaging::TraceContext& request_span,
                             std::function<void(SubmitOutcome)> done) {
    if (!bus_.transport().IsConnected() || bus_.stopping()) {
        done(SubmitOutcome::kUnavailable);
        return;
    }
    const auto now = contracts::UtcNow();
    contracts::OrderSubmitted submitted{.order_id = order.order_id,
                                        .timestamp = now,
                                        .customer_number = order.customer_number,
                                        .total_amount = order.total_amount,
                                        .items = order.items};
    messaging::OutgoingMessage message = bus_.PreparePublish(submitted, {.trace = request_span});

    OrderRecord record;
    record.order_id = order.order_id;
    record.status = OrderStatus::kAccepted;
    record.customer_number = order.customer_number;
    record.total_amount = order.total_amount;
    record.items = order.items;
    record.created_at = now;
    record.updated_at = now;
    std::vector<OutboxRelay::StoredRow> rows;
    std::optional<SubmitOutcome> repeated;
    unit_of_work_.Run([&] {
        auto acceptance = repository_.AcceptOrder(record, message);
        if (acceptance.stored)
            rows.emplace_back(acceptance.outbox_sequence, std::move(message));
        else
            repeated = acceptance.existing && IsSameOrder(*acceptance.existing, order) ? SubmitOutcome::kDuplicate
                                                                                       : SubmitOutcome::kConflict;
    });
    if (repeated) {
        done(*repeated);
        return;
    }
    // kAccepted once the order and its OrderSubmitted are durable: the relay publishes it, now or,
    // if the broker is away or blocks publishing, once it can. The client does not wait for that.
    messaging::LogFields log_fields;
    log_fields.Set(messaging::kTraceLogField, request_span.trace_id);
    log_fields.Set(contracts::kOrderLogField, order.order_id.str());
    relay_.PublishAfterCommit(std::move(rows), [order_id = order.order_id, log_fields = std::move(log_fields),
                                                done = std::move(done)](const messaging::Status& committed) {
        messaging::LogScope log_scope(log_fields);
        if (!committed.ok()) spdlog::error("order {}: not stored ({})", order_id.str(), committed.message());
        done(committed.ok() ? SubmitOutcome::kAccepted : SubmitOutcome::kUnavailable);
    });
}

}  // namespace order_service
