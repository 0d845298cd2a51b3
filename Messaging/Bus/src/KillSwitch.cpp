#include "Bus/KillSwitch.h"

namespace messaging {

KillSwitch::KillSwitch(KillSwitchSettings settings, Clock::time_point now) : settings_(settings) {
    ResetCounts(now);
}

void KillSwitch::ResetCounts(Clock::time_point now) {
    period_start_ = now;
    attempts_ = 0;
    failures_ = 0;
}

void KillSwitch::OnAttempt(Clock::time_point now) {
    if (state_ == State::kStopped) return;
    // Counts start over every tracking period while started; on probation they run until it ends.
    if (state_ == State::kStarted && now - period_start_ >= settings_.tracking_period) ResetCounts(now);
    ++attempts_;
}

void KillSwitch::OnSuccess(Clock::time_point now) {
    if (state_ == State::kRestarting && attempts_ > settings_.activation_threshold) {
        state_ = State::kStarted;
        ResetCounts(now);
    }
}

bool KillSwitch::OnFault(Clock::time_point now) {
    switch (state_) {
        case State::kStopped:
            return false;
        case State::kRestarting:
            ++failures_;
            state_ = State::kStopped;
            tripped_on_probation_ = true;
            return true;
        case State::kStarted:
            break;
    }
    if (now - period_start_ >= settings_.tracking_period) ResetCounts(now);
    ++failures_;
    if (attempts_ <= settings_.activation_threshold) return false;
    if (static_cast<long long>(failures_) * 100 < static_cast<long long>(settings_.trip_threshold) * attempts_)
        return false;
    state_ = State::kStopped;
    return true;
}

void KillSwitch::OnRestarted(Clock::time_point now) {
    if (state_ != State::kStopped) return;
    state_ = State::kRestarting;
    tripped_on_probation_ = false;
    ResetCounts(now);
}

std::string KillSwitch::Describe() const {
    const std::string counts = std::to_string(failures_) + " of " + std::to_string(attempts_) + " messages failed";
    if (tripped_on_probation_) return counts + " on probation, where one failure stops it again";
    return counts + " within the tracking period";
}

}  // namespace messaging
