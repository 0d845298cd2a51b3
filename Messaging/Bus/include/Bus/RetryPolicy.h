// MassTransit's in-memory retry policies (UseMessageRetry): None, Immediate, Interval, Intervals,
// Exponential and Incremental. A message runs 1 + Limit() times at most; the delays run on the event
// loop while the delivery stays unacknowledged.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "Contracts/JsonFields.h"

namespace messaging {

class RetryPolicy {
  public:
    using Millis = std::chrono::milliseconds;
    enum class Kind { kNone, kImmediate, kInterval, kIntervals, kExponential, kIncremental };

    static RetryPolicy None() { return RetryPolicy(Kind::kNone, 0); }
    static RetryPolicy Immediate(int limit);
    static RetryPolicy Interval(int limit, Millis interval);
    static RetryPolicy Intervals(std::vector<Millis> intervals);
    static RetryPolicy Exponential(int limit, Millis min_interval, Millis max_interval, Millis interval_delta);
    static RetryPolicy Incremental(int limit, Millis initial_interval, Millis interval_increment);

    // The delay before retry number `retry` (1-based), or nullopt when the policy is used up.
    std::optional<Millis> DelayBeforeRetry(int retry) const;
    int Limit() const { return limit_; }
    Kind kind() const { return kind_; }
    std::string Describe() const;  // e.g. "Interval(3, 500ms)"

    // {"Policy": "Interval", "Limit": 3, "IntervalMs": 500} and the like; throws std::invalid_argument
    // naming the bad key.
    static RetryPolicy FromJson(const contracts::Json& json);
    contracts::OrderedJson ToJson() const;

  private:
    RetryPolicy(Kind kind, int limit) : kind_(kind), limit_(limit) {}

    Kind kind_;
    int limit_;
    std::vector<Millis> intervals_;  // Interval/Intervals: per retry; Exponential: precomputed
    Millis initial_{0};
    Millis increment_{0};
    Millis min_{0};
    Millis max_{0};
    Millis delta_{0};
};

}  // namespace messaging
