// Accepting a new order from the HTTP API, on the loop thread: the order row and its OrderSubmitted
// are committed together in the outbox. A repeated id is kDuplicate when it brings the same order
// (customer, amount by value, items) and kConflict when it brings another one; neither stores
// anything. kAccepted means durably stored: the relay publishes it, at once or when the broker can
// take it. kUnavailable means nothing was stored. Requests of one loop turn share one commit.
#pragma once

#include <functional>

#include "OrderService/OrderRepository.h"
#include "OrderService/OutboxRelay.h"

namespace order_service {

struct NewOrder {
    contracts::OrderId order_id;
    std::string customer_number;
    contracts::Decimal total_amount;
    std::vector<contracts::OrderItem> items;
};

enum class SubmitOutcome { kAccepted, kDuplicate, kConflict, kUnavailable };

// Whether a stored order is the one `order` describes: same customer, amount and items (by value).
bool IsSameOrder(const OrderRecord& stored, const NewOrder& order);

class OrderSubmission {
  public:
    OrderSubmission(messaging::Bus& bus, OrderRepository& repository, messaging::UnitOfWork& unit_of_work,
                    OutboxRelay& relay)
        : bus_(bus), repository_(repository), unit_of_work_(unit_of_work), relay_(relay) {}

    // `request_span` is the span of the HTTP request that submits the order: OrderSubmitted carries a
    // child of it, so the order's whole saga is one trace.
    void Submit(const NewOrder& order, const messaging::TraceContext& request_span,
                std::function<void(SubmitOutcome)> done);

  private:
    messaging::Bus& bus_;
    OrderRepository& repository_;
    messaging::UnitOfWork& unit_of_work_;
    OutboxRelay& relay_;
};

}  // namespace order_service
