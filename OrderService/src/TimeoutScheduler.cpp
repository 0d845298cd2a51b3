#include "OrderService/TimeoutScheduler.h"

#include "Contracts/Identifiers.h"

namespace order_service {

TimeoutScheduler::TimeoutScheduler(messaging::EventLoop& loop, FireCallback fire)
    : loop_(loop), fire_(std::move(fire)), timer_(loop) {}

void TimeoutScheduler::Schedule(const contracts::OrderId& order_id, const std::string& token,
                                std::int64_t due_unix_ms) {
    Cancel(order_id);
    by_order_[order_id] = by_due_.emplace(due_unix_ms, Entry{order_id, token});
    Arm();
}

void TimeoutScheduler::Cancel(const contracts::OrderId& order_id) {
    auto it = by_order_.find(order_id);
    if (it == by_order_.end()) return;
    by_due_.erase(it->second);
    by_order_.erase(it);
}

void TimeoutScheduler::Arm() {
    if (by_due_.empty()) {
        timer_.Stop();
        return;
    }
    const std::int64_t now = contracts::ToUnixMillis(contracts::UtcNow());
    const std::int64_t delay = std::max<std::int64_t>(0, by_due_.begin()->first - now);
    timer_.Start(std::chrono::milliseconds(delay), [this] { FireDue(); });
}

void TimeoutScheduler::FireDue() {
    const std::int64_t now = contracts::ToUnixMillis(contracts::UtcNow());
    std::vector<Entry> due;
    while (!by_due_.empty() && by_due_.begin()->first <= now) {
        due.push_back(by_due_.begin()->second);
        by_order_.erase(by_due_.begin()->second.order_id);
        by_due_.erase(by_due_.begin());
    }
    Arm();
    for (const auto& entry : due) fire_(entry.order_id, entry.token);
}

}  // namespace order_service
