// A test harness in the spirit of MassTransit's ITestHarness: it observes one or more buses and keeps
// what they published, consumed, faulted and moved to `_error`/`_skipped`; a test thread can wait on
// a predicate over those lists with a deadline. Recording happens on the loop thread; reading and
// waiting are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "Bus/Bus.h"

namespace messaging {

struct RecordedMessage {
    std::string destination;  // exchange published to, or the queue consumed from / moved to
    std::vector<std::string> message_type;
    contracts::Json message;  // the envelope's message object (null when the body is not an envelope)
    contracts::Json envelope;
    TransportMessage transport;
    std::string error;  // for faults

    bool HasType(const std::string& urn) const;
};

class TestHarness : public BusObserver {
  public:
    using Clock = std::chrono::steady_clock;
    static constexpr std::chrono::milliseconds kDefaultTimeout{10000};

    void Observe(Bus& bus) { bus.SetObserver(this); }

    void OnPublished(const OutgoingMessage& message) override;
    void OnConsumed(const std::string& queue, const Envelope& envelope, const std::string& urn) override;
    void OnFaulted(const std::string& queue, const Envelope& envelope, const std::string& urn,
                   const std::string& error) override;
    void OnMoved(const std::string& to_queue, const TransportMessage& message) override;

    std::vector<RecordedMessage> Published() const;
    std::vector<RecordedMessage> Consumed() const;
    std::vector<RecordedMessage> Faulted() const;
    std::vector<RecordedMessage> Moved() const;

    // Typed views: every published (or consumed) T that satisfies `predicate`.
    template <class T>
    std::vector<T> Published(const std::function<bool(const T&)>& predicate = nullptr) const {
        return Typed<T>(Published(), predicate);
    }
    template <class T>
    std::vector<T> Consumed(const std::function<bool(const T&)>& predicate = nullptr) const {
        return Typed<T>(Consumed(), predicate);
    }

    // Waits until `condition` holds, re-checking whenever something is recorded; false on timeout.
    bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout = kDefaultTimeout) const;

    template <class T>
    bool WaitPublished(const std::function<bool(const T&)>& predicate,
                       std::chrono::milliseconds timeout = kDefaultTimeout) const {
        return WaitUntil([&] { return !Published<T>(predicate).empty(); }, timeout);
    }
    template <class T>
    bool WaitConsumed(const std::function<bool(const T&)>& predicate,
                      std::chrono::milliseconds timeout = kDefaultTimeout) const {
        return WaitUntil([&] { return !Consumed<T>(predicate).empty(); }, timeout);
    }

  private:
    template <class T>
    static std::vector<T> Typed(const std::vector<RecordedMessage>& records,
                                const std::function<bool(const T&)>& predicate) {
        std::vector<T> out;
        const std::string urn = contracts::MessageContract<T>::Name().Urn();
        for (const auto& record : records) {
            if (!record.HasType(urn)) continue;
            try {
                T message = contracts::MessageContract<T>::Read(record.message);
                if (!predicate || predicate(message)) out.push_back(std::move(message));
            } catch (const contracts::ContractError&) {
            }
        }
        return out;
    }
    void Record(std::vector<RecordedMessage>& list, RecordedMessage record);

    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::vector<RecordedMessage> published_;
    std::vector<RecordedMessage> consumed_;
    std::vector<RecordedMessage> faulted_;
    std::vector<RecordedMessage> moved_;
};

}  // namespace messaging
