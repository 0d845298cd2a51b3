// Sends what the outbox holds: a message committed with saga state (or with a new order) is
// published, and its row removed once the broker confirms it. A sweep every second re-sends rows
// that have outlived one sweep, which covers a crash between commit and publish and a broker that
// was away.
#pragma once

#include <memory>
#include <set>
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
    // Publishes one stored message now; the row is removed on confirmation.
    void Send(std::int64_t sequence, messaging::OutgoingMessage message, messaging::Completion done);
    // Removes the rows of messages the broker has confirmed: the rows confirmed during a turn go in one
    // unit, just before the turn's batch commits. A row that cannot be removed stays and is sent
    // again: a duplicate the consumers ignore, never a loss.
    void Remove(const std::vector<std::int64_t>& sequences);
    void Sweep();

  private:
    void RemoveConfirmed();

    messaging::Bus& bus_;
    OrderRepository& repository_;
    messaging::UnitOfWork& unit_of_work_;
    messaging::Timer timer_;
    std::set<std::int64_t> in_flight_;
    std::vector<std::int64_t> confirmed_;  // confirmed this turn, removed before the turn's commit
    std::int64_t seen_up_to_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace order_service
