#include "OrderService/OutboxRelay.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace order_service {

OutboxRelay::OutboxRelay(messaging::EventLoop& loop, messaging::Bus& bus, OrderRepository& repository,
                         messaging::UnitOfWork& unit_of_work)
    : bus_(bus), repository_(repository), unit_of_work_(unit_of_work), timer_(loop) {}

void OutboxRelay::Start(std::chrono::milliseconds sweep_interval) {
    // Rows left by an earlier run are sent at the first sweep.
    const auto pending = repository_.PendingOutbox(1);
    if (!pending.empty()) seen_up_to_ = INT64_MAX;
    timer_.Start(
        std::chrono::milliseconds(0), [this] { Sweep(); }, sweep_interval);
}

void OutboxRelay::Send(std::int64_t sequence, messaging::OutgoingMessage message, messaging::Completion done) {
    in_flight_.insert(sequence);
    bus_.Dispatch({std::move(message)}, [this, sequence, done = std::move(done)](const messaging::Status& status) {
        in_flight_.erase(sequence);
        if (status.ok()) Remove({sequence});
        if (done) done(status);
    });
}

void OutboxRelay::Remove(const std::vector<std::int64_t>& sequences) {
    if (sequences.empty()) return;
    const bool first_this_turn = confirmed_.empty();
    confirmed_.insert(confirmed_.end(), sequences.begin(), sequences.end());
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
    const auto pending = repository_.PendingOutbox(1000);
    std::int64_t newest = 0;
    std::size_t resent = 0;
    for (auto& entry : pending) {
        newest = std::max(newest, entry.sequence);
        // A row younger than one sweep is normally still on its way through the consumer that wrote it.
        if (entry.sequence > seen_up_to_ || in_flight_.count(entry.sequence) ||
            std::find(confirmed_.begin(), confirmed_.end(), entry.sequence) != confirmed_.end())
            continue;
        ++resent;
        Send(entry.sequence, std::move(entry.message), nullptr);
    }
    if (resent) spdlog::info("outbox: re-sending {} stored message(s)", resent);
    seen_up_to_ = newest;
}

}  // namespace order_service
