// Saga timeouts on the event loop: one uv timer armed for the earliest due time over an ordered set,
// so a million pending orders cost a map entry each, not a handle each. Due times live in SQLite,
// so the schedule is rebuilt after a restart.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <unordered_map>

#include "Contracts/Identifiers.h"
#include "Runtime/EventLoop.h"

namespace order_service {

class TimeoutScheduler {
  public:
    using FireCallback = std::function<void(const contracts::OrderId& order_id, const std::string& token)>;

    TimeoutScheduler(messaging::EventLoop& loop, FireCallback fire);
    // Replaces any earlier schedule for the order.
    void Schedule(const contracts::OrderId& order_id, const std::string& token, std::int64_t due_unix_ms);
    void Cancel(const contracts::OrderId& order_id);
    std::size_t PendingCount() const { return by_order_.size(); }

  private:
    struct Entry {
        contracts::OrderId order_id;
        std::string token;
    };
    void Arm();
    void FireDue();

    messaging::EventLoop& loop_;
    FireCallback fire_;
    messaging::Timer timer_;
    std::multimap<std::int64_t, Entry> by_due_;
    std::unordered_map<contracts::OrderId, std::multimap<std::int64_t, Entry>::iterator> by_order_;
};

}  // namespace order_service
