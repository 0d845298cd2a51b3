#include "OrderService/OrderSubmission.h"

#include <spdlog/spdlog.h>

namespace order_service {

void OrderSubmission::Submit(const NewOrder& order, std::function<void(SubmitOutcome)> done) {
    if (!bus_.transport().IsConnected() || bus_.stopping()) {
        done(SubmitOutcome::kUnavailable);
        return;
    }
    const auto now = contracts::UtcNow();
    contracts::OrderSubmitted submitted{order.order_id, now, order.customer_number, order.total_amount, order.items};
    messaging::OutgoingMessage message = bus_.PreparePublish(submitted);

    OrderRecord record;
    record.order_id = order.order_id;
    record.status = OrderStatus::kAccepted;
    record.customer_number = order.customer_number;
    record.total_amount = order.total_amount;
    record.items = order.items;
    record.created_at = now;
    record.updated_at = now;
    std::int64_t sequence = 0;
    bool duplicate = false;
    unit_of_work_.Run([&] {
        messaging::Transaction transaction(repository_.db());
        if (!repository_.InsertOrderIfAbsent(record)) {
            duplicate = true;
            return;
        }
        sequence = repository_.AddToOutbox(message);
        transaction.Commit();
    });
    if (duplicate) {
        done(SubmitOutcome::kDuplicate);
        return;
    }
    unit_of_work_.AfterCommit([this, sequence, message = std::move(message), order_id = order.order_id,
                               done = std::move(done)](const messaging::Status& committed) mutable {
        if (!committed.ok()) {
            spdlog::error("order {}: not stored ({})", order_id, committed.message());
            done(SubmitOutcome::kUnavailable);
            return;
        }
        // Stored with its OrderSubmitted in the outbox: the relay publishes it, now or, if the broker
        // is away or blocks publishing, once it can. The client hears so without waiting for that.
        done(SubmitOutcome::kAccepted);
        relay_.Send(sequence, std::move(message), [order_id](const messaging::Status& status) {
            if (!status.ok())
                spdlog::warn("order {}: OrderSubmitted not confirmed yet ({}); the outbox will send it", order_id,
                             status.message());
        });
    });
}

}  // namespace order_service
