// How a loop turn's acks go on the wire: the run of acks that settles the oldest unsettled
// deliveries becomes one basic.ack with `multiple`; every other ack is sent on its own.
#pragma once

#include <cstdint>
#include <set>
#include <vector>

namespace messaging {

struct AckPlan {
    std::uint64_t multiple_up_to = 0;   // 0: no run of two or more
    std::vector<std::uint64_t> single;  // ascending
};
AckPlan PlanAcks(const std::set<std::uint64_t>& unsettled, std::vector<std::uint64_t> acks);

}  // namespace messaging
