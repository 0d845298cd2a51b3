// The kill switch of a receive endpoint, as MassTransit's UseKillSwitch counts: it trips when at
// least TripThreshold percent of more than ActivationThreshold messages in a tracking period fail,
// stays stopped for RestartTimeout, then restarts on probation where one failure trips it again and
// more than ActivationThreshold messages with a success bring it back to normal. Pure bookkeeping:
// the bus stops and restarts the consumer; the clock is passed in.
#pragma once

#include <chrono>
#include <string>

namespace messaging {

struct KillSwitchSettings {
    bool enabled = false;
    int activation_threshold = 100;  // messages in the period before it may trip
    int trip_threshold = 10;         // percent of those messages that failed
    std::chrono::milliseconds tracking_period = std::chrono::seconds(60);
    std::chrono::milliseconds restart_timeout = std::chrono::seconds(60);
};

class KillSwitch {
  public:
    using Clock = std::chrono::steady_clock;
    enum class State { kStarted, kStopped, kRestarting };

    KillSwitch(KillSwitchSettings settings, Clock::time_point now);

    // A message reached a consumer.
    void OnAttempt(Clock::time_point now);
    // Its consumer succeeded.
    void OnSuccess(Clock::time_point now);
    // Its consumer gave up on it; true when this failure trips the switch (the endpoint must stop).
    bool OnFault(Clock::time_point now);
    // The endpoint consumes again after the restart timeout.
    void OnRestarted(Clock::time_point now);

    State state() const { return state_; }
    const KillSwitchSettings& settings() const { return settings_; }
    // The counts and which rule tripped it, for the log line when it trips.
    std::string Describe() const;

  private:
    void ResetCounts(Clock::time_point now);

    KillSwitchSettings settings_;
    State state_ = State::kStarted;
    Clock::time_point period_start_;
    int attempts_ = 0;
    int failures_ = 0;
    bool tripped_on_probation_ = false;  // the last trip was a failure on probation
};

}  // namespace messaging
