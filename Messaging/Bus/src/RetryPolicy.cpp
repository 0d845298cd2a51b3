#include "Bus/RetryPolicy.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

namespace messaging {
namespace {

double Random(double low, double high) {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    return std::uniform_real_distribution<double>(low, high)(engine);
}

void RequireLimit(int limit) {
    if (limit < 0) throw std::invalid_argument("retry Limit must not be negative");
}

}  // namespace

RetryPolicy RetryPolicy::Immediate(int limit) {
    RequireLimit(limit);
    return RetryPolicy(Kind::kImmediate, limit);
}

RetryPolicy RetryPolicy::Interval(int limit, Millis interval) {
    RequireLimit(limit);
    RetryPolicy policy(Kind::kInterval, limit);
    policy.intervals_.assign(static_cast<std::size_t>(limit), interval);
    return policy;
}

RetryPolicy RetryPolicy::Intervals(std::vector<Millis> intervals) {
    RetryPolicy policy(Kind::kIntervals, static_cast<int>(intervals.size()));
    policy.intervals_ = std::move(intervals);
    return policy;
}

RetryPolicy RetryPolicy::Exponential(int limit, Millis min_interval, Millis max_interval, Millis interval_delta) {
    RequireLimit(limit);
    if (max_interval < min_interval) throw std::invalid_argument("retry MaxIntervalMs must be >= MinIntervalMs");
    RetryPolicy policy(Kind::kExponential, limit);
    policy.min_ = min_interval;
    policy.max_ = max_interval;
    policy.delta_ = interval_delta;
    // As MassTransit: min + 2^i * rand(0.8 delta, 1.2 delta), capped at max, computed once.
    for (int i = 0; i < limit; ++i) {
        const double delta = static_cast<double>(interval_delta.count());
        const double ms =
            static_cast<double>(min_interval.count()) + std::pow(2.0, i) * Random(0.8 * delta, 1.2 * delta);
        policy.intervals_.push_back(
            Millis(static_cast<long long>(std::min(ms, static_cast<double>(max_interval.count())))));
    }
    return policy;
}

RetryPolicy RetryPolicy::Incremental(int limit, Millis initial_interval, Millis interval_increment) {
    RequireLimit(limit);
    RetryPolicy policy(Kind::kIncremental, limit);
    policy.initial_ = initial_interval;
    policy.increment_ = interval_increment;
    return policy;
}

std::optional<RetryPolicy::Millis> RetryPolicy::DelayBeforeRetry(int retry) const {
    if (retry < 1 || retry > limit_) return std::nullopt;
    switch (kind_) {
        case Kind::kNone:
            return std::nullopt;
        case Kind::kImmediate:
            return Millis(0);
        case Kind::kInterval:
        case Kind::kIntervals:
            return intervals_[static_cast<std::size_t>(retry - 1)];
        case Kind::kExponential: {
            // Each use is jittered by 0.75-1.25, as MassTransit does.
            const double base = static_cast<double>(intervals_[static_cast<std::size_t>(retry - 1)].count());
            return Millis(static_cast<long long>(base * Random(0.75, 1.25)));
        }
        case Kind::kIncremental:
            return initial_ + increment_ * (retry - 1);
    }
    return std::nullopt;
}

std::string RetryPolicy::Describe() const {
    auto ms = [](Millis m) { return std::to_string(m.count()) + "ms"; };
    switch (kind_) {
        case Kind::kNone:
            return "None";
        case Kind::kImmediate:
            return "Immediate(" + std::to_string(limit_) + ")";
        case Kind::kInterval:
            return "Interval(" + std::to_string(limit_) + ", " + (intervals_.empty() ? "0ms" : ms(intervals_[0])) + ")";
        case Kind::kIntervals: {
            std::string out = "Intervals(";
            for (std::size_t i = 0; i < intervals_.size(); ++i) out += (i ? ", " : "") + ms(intervals_[i]);
            return out + ")";
        }
        case Kind::kExponential:
            return "Exponential(" + std::to_string(limit_) + ", " + ms(min_) + ", " + ms(max_) + ", " + ms(delta_) +
                   ")";
        case Kind::kIncremental:
            return "Incremental(" + std::to_string(limit_) + ", " + ms(initial_) + ", " + ms(increment_) + ")";
    }
    return "?";
}

RetryPolicy RetryPolicy::FromJson(const contracts::Json& json) {
    if (!json.is_object())
        throw std::invalid_argument("Retry must be an object such as {\"Policy\": \"Interval\", ...}");
    auto integer = [&](const char* key, bool required, long long fallback = 0) -> long long {
        const contracts::Json* field = contracts::FindField(json, key);
        if (!field) {
            if (required) throw std::invalid_argument(std::string("Retry.") + key + " is required");
            return fallback;
        }
        if (!field->is_number_integer() || field->get<long long>() < 0)
            throw std::invalid_argument(std::string("Retry.") + key + " must be a non-negative integer");
        return field->get<long long>();
    };
    const contracts::Json* policy_field = contracts::FindField(json, "Policy");
    if (!policy_field || !policy_field->is_string()) throw std::invalid_argument("Retry.Policy is required");
    const std::string policy = policy_field->get<std::string>();
    static const std::vector<std::string> kKnownKeys = {
        "Policy",        "Limit",           "IntervalMs",        "IntervalsMs",        "MinIntervalMs",
        "MaxIntervalMs", "IntervalDeltaMs", "InitialIntervalMs", "IntervalIncrementMs"};
    for (auto it = json.begin(); it != json.end(); ++it)
        if (std::find(kKnownKeys.begin(), kKnownKeys.end(), it.key()) == kKnownKeys.end())
            throw std::invalid_argument("Retry." + it.key() + " is not a known setting");

    static const std::vector<std::string> kPolicies = {"None",      "Immediate",   "Interval",
                                                       "Intervals", "Exponential", "Incremental"};
    if (std::find(kPolicies.begin(), kPolicies.end(), policy) == kPolicies.end())
        throw std::invalid_argument("Retry.Policy '" + policy +
                                    "' is not one of None, Immediate, Interval, Intervals, Exponential, Incremental");
    const int limit = static_cast<int>(integer("Limit", policy != "None" && policy != "Intervals"));
    if (policy == "None") return None();
    if (policy == "Immediate") return Immediate(limit);
    if (policy == "Interval") return Interval(limit, Millis(integer("IntervalMs", true)));
    if (policy == "Intervals") {
        const contracts::Json* list = contracts::FindField(json, "IntervalsMs");
        if (!list || !list->is_array()) throw std::invalid_argument("Retry.IntervalsMs must be an array of integers");
        std::vector<Millis> intervals;
        for (const auto& value : *list) {
            if (!value.is_number_integer() || value.get<long long>() < 0)
                throw std::invalid_argument("Retry.IntervalsMs must hold non-negative integers");
            intervals.emplace_back(value.get<long long>());
        }
        return Intervals(std::move(intervals));
    }
    if (policy == "Exponential")
        return Exponential(limit, Millis(integer("MinIntervalMs", true)), Millis(integer("MaxIntervalMs", true)),
                           Millis(integer("IntervalDeltaMs", true)));
    if (policy == "Incremental")
        return Incremental(limit, Millis(integer("InitialIntervalMs", true)),
                           Millis(integer("IntervalIncrementMs", true)));
    return None();
}

contracts::OrderedJson RetryPolicy::ToJson() const {
    contracts::OrderedJson json;
    switch (kind_) {
        case Kind::kNone:
            json["Policy"] = "None";
            break;
        case Kind::kImmediate:
            json["Policy"] = "Immediate";
            json["Limit"] = limit_;
            break;
        case Kind::kInterval:
            json["Policy"] = "Interval";
            json["Limit"] = limit_;
            json["IntervalMs"] = intervals_.empty() ? 0 : intervals_[0].count();
            break;
        case Kind::kIntervals: {
            json["Policy"] = "Intervals";
            auto list = contracts::OrderedJson::array();
            for (auto i : intervals_) list.push_back(i.count());
            json["IntervalsMs"] = list;
            break;
        }
        case Kind::kExponential:
            json["Policy"] = "Exponential";
            json["Limit"] = limit_;
            json["MinIntervalMs"] = min_.count();
            json["MaxIntervalMs"] = max_.count();
            json["IntervalDeltaMs"] = delta_.count();
            break;
        case Kind::kIncremental:
            json["Policy"] = "Incremental";
            json["Limit"] = limit_;
            json["InitialIntervalMs"] = initial_.count();
            json["IntervalIncrementMs"] = increment_.count();
            break;
    }
    return json;
}

}  // namespace messaging
