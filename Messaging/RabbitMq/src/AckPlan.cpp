#include "RabbitMq/AckPlan.h"

#include <algorithm>

namespace messaging {

AckPlan PlanAcks(const std::set<std::uint64_t>& unsettled, std::vector<std::uint64_t> acks) {
    std::sort(acks.begin(), acks.end());
    acks.erase(std::unique(acks.begin(), acks.end()), acks.end());
    std::size_t run = 0;
    for (auto it = unsettled.begin(); run < acks.size() && it != unsettled.end() && *it == acks[run]; ++it) ++run;
    AckPlan plan;
    if (run < 2) run = 0;  // a multiple-ack of one delivery is just an ack
    if (run > 0) plan.multiple_up_to = acks[run - 1];
    plan.single.assign(acks.begin() + static_cast<std::ptrdiff_t>(run), acks.end());
    return plan;
}

}  // namespace messaging
