#include "OrderService/OutboxRelay.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace order_service {

OutboxRelay::OutboxRelay(messaging::EventLoop& loop, messaging::Bus& bus, OrderRepository& repository,
                         messaging::UnitOfWork& unit_of_work)
    : bus_(bus), repository_(repository), unit_of_work_(unit_of_work), timer_(loop) {}

void OutboxRelay::Start(std::chrono::milliseconds sweep_interval) {
    // Rows left by an earlier run are sent at the first sweep: none of them is in flight.
    timer_.Start(
        std::chrono::milliseconds(0), [this] { Sweep(); }, sweep_interval);
}

void OutboxRelay::PublishAfterCommit(std::vector<StoredRow> rows, messaging::Completion stored) {
    // In flight from now on, so that a sweep before the commit's outcome does not send them too.
    for (const auto& row : rows) in_flight_.insert(row.first);
    unit_of_work_.AfterCommit([this, alive = std::weak_ptr<bool>(alive_), rows = std::move(rows),
                               stored = std::move(stored)](const messaging::Status& committed) mutable {
        if (alive.expired()) return;
        if (!committed.ok()) {
            for (const auto& row : rows) in_flight_.erase(row.first);  // rolled back: the rows do not exist
        }
        if (stored) stored(committed);
        if (!committed.ok()) return;
        for (auto& [sequence, message] : rows) Send(sequence, std::move(message));
    });
}

void OutboxRelay::Send(std::int64_t sequence, messaging::OutgoingMessage message) {
    bus_.Dispatch(std::move(message),
                  [this, alive = std::weak_ptr<bool>(alive_), sequence](const messaging::Status& status) {
                      if (alive.expired()) return;
                      in_flight_.erase(sequence);
                      if (status.ok())
                          Remove(sequence);
                      else
                          spdlog::warn("outbox: message {} not confirmed ({}); the next sweep sends it again", sequence,
                                       status.message());
                  });
}

void OutboxRelay::Remove(std::int64_t sequence) {
    const bool first_this_turn = confirmed_.empty();
    confirmed_.push_back(sequence);
    if (!first_this_turn) return;
    unit_of_work_.RunBeforeCommit([this, alive = std::weak_ptr<bool>(alive_)] {
        if (!alive.expired()) RemoveConfirmed();
    });
}

void OutboxRelay::RemoveConfirmed() {
    const auto rows = std::move(confirmed_);
    confirmed_.clear();
    try {
        repository_.RemoveFromOutbox(rows);
    } catch (const std::exception& e) {
        // Thrown on, so that the part already removed is undone; the unit of work logs it once.
        throw std::runtime_error(std::to_string(rows.size()) + " outbox row(s) could not be removed (" + e.what() +
                                 "); they will be sent again");
    }
}

void OutboxRelay::Sweep() {
    if (!bus_.transport().IsConnected()) return;
    std::size_t resent = 0;
    for (auto& entry : repository_.PendingOutbox(1000)) {
        if (in_flight_.count(entry.sequence) ||
            std::find(confirmed_.begin(), confirmed_.end(), entry.sequence) != confirmed_.end())
            continue;
        ++resent;
        in_flight_.insert(entry.sequence);
        Send(entry.sequence, std::move(entry.message));
    }
    if (resent) spdlog::info("outbox: sending {} stored message(s)", resent);
}

}  // namespace order_service
