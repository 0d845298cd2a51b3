// The queues declared on demand (an endpoint's `_error` and `_skipped`, with the first message moved
// there) that the broker refused because one exists with other arguments, with the broker's account
// of why. While a queue is refused, publishing to its exchange fails at once instead of closing the
// channel again; the service keeps running, and a new declaration of the queue clears the refusal.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace messaging {

class DeclarationRefusals {
  public:
    // Records the refusal; true when the queue was not refused already (so it is logged once).
    bool Refuse(const std::string& queue, std::string reason) {
        return refused_.insert_or_assign(queue, std::move(reason)).second;
    }
    // The queue is being declared again: whatever the broker says next decides.
    void Forget(const std::string& queue) { refused_.erase(queue); }
    // Why the queue behind `exchange` (the same-named exchange of a refused queue) was refused.
    std::optional<std::string> Find(const std::string& exchange) const {
        if (refused_.empty()) return std::nullopt;
        auto it = refused_.find(exchange);
        if (it == refused_.end()) return std::nullopt;
        return it->second;
    }
    std::vector<std::pair<std::string, std::string>> List() const { return {refused_.begin(), refused_.end()}; }

  private:
    std::map<std::string, std::string> refused_;
};

}  // namespace messaging
