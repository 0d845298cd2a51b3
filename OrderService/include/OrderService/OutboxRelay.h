// The order service's at-least-once publishing, in one place. Every message the service publishes
// (the saga's commands and events, OrderSubmitted from the HTTP API) is first written to the outbox
// table in the same SQLite transaction as the state it follows from; once that commits, the relay
// publishes it and deletes its row when the broker confirms it. The bus does not hold these messages:
// the saga hands them over (ConsumeContext::TakeOutgoing), and its delivery is acked once the
// transaction commits.
//
// A crash between commit and confirm leaves the rows: at the next start the first sweep publishes
// every row, and a sweep every second publishes any row that is neither in flight nor confirmed (the
// broker was away, a publish was not confirmed). A message can so go out twice, never not at all;
// the consumers recognise a repeated message id.
#pragma once

#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "Bus/Bus.h"
#include "OrderService/OrderRepository.h"

namespace order_service {

class OutboxRelay {
  public:
    OutboxRelay(messaging::EventLoop& loop, messaging::Bus& bus, OrderRepository& repository,
                messaging::UnitOfWork& unit_of_work);
    ~OutboxRelay() { *alive_ = false; }
    OutboxRelay(const OutboxRelay&) = delete;
    OutboxRelay& operator=(const OutboxRelay&) = delete;
    void Start(std::chrono::milliseconds sweep_interval = std::chrono::milliseconds(1000));

    // Rows written by the unit of work running now: published once it commits (forgotten if it does
    // not). `stored` runs after the commit with its outcome (OK: the rows are durable).
    using StoredRow = std::pair<std::int64_t, messaging::OutgoingMessage>;
    void PublishAfterCommit(std::vector<StoredRow> rows, messaging::Completion stored = {});
    void Sweep();

  private:
    // Publishes one stored row, which the caller has marked in flight; the row is removed once
    // confirmed, and the outcome clears the mark either way.
    void Send(std::int64_t sequence, messaging::OutgoingMessage message);
    // Removes the rows of messages the broker has confirmed: the rows confirmed during a turn go in one
    // unit, just before the turn's batch commits. A row that cannot be removed stays and is sent
    // again: a duplicate the consumers ignore, never a loss.
    void Remove(std::int64_t sequence);
    void RemoveConfirmed();

    messaging::Bus& bus_;
    OrderRepository& repository_;
    messaging::UnitOfWork& unit_of_work_;
    messaging::Timer timer_;
    std::set<std::int64_t> in_flight_;     // written (maybe not yet committed) or published, not confirmed
    std::vector<std::int64_t> confirmed_;  // confirmed this turn, removed before the turn's commit
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace order_service
