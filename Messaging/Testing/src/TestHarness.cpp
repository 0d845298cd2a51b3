#include "Testing/TestHarness.h"

namespace messaging {
namespace {

RecordedMessage FromEnvelope(const std::string& destination, const Envelope& envelope) {
    RecordedMessage record;
    record.destination = destination;
    record.message_type = envelope.message_type;
    record.message = envelope.message;
    return record;
}

RecordedMessage FromTransport(const std::string& destination, const TransportMessage& message) {
    RecordedMessage record;
    record.destination = destination;
    record.transport = message;
    record.envelope = contracts::Json::parse(message.body, nullptr, false);
    if (record.envelope.is_object()) {
        if (const auto* types = contracts::FindField(record.envelope, "messageType"); types && types->is_array())
            for (const auto& type : *types)
                if (type.is_string()) record.message_type.push_back(type.get<std::string>());
        if (const auto* body = contracts::FindField(record.envelope, "message")) record.message = *body;
    }
    return record;
}

}  // namespace

bool RecordedMessage::HasType(const std::string& urn) const {
    for (const auto& type : message_type)
        if (contracts::EqualsIgnoreCase(type, urn)) return true;
    return false;
}

void TestHarness::Record(std::vector<RecordedMessage>& list, RecordedMessage record) {
    {
        std::lock_guard lock(mutex_);
        list.push_back(std::move(record));
    }
    changed_.notify_all();
}

void TestHarness::OnPublished(const OutgoingMessage& message) {
    Record(published_, FromTransport(message.exchange, message.message));
}

void TestHarness::OnConsumed(const std::string& queue, const Envelope& envelope, const std::string&) {
    Record(consumed_, FromEnvelope(queue, envelope));
}

void TestHarness::OnFaulted(const std::string& queue, const Envelope& envelope, const std::string&,
                            const std::string& error) {
    RecordedMessage record = FromEnvelope(queue, envelope);
    record.error = error;
    Record(faulted_, std::move(record));
}

void TestHarness::OnMoved(const std::string& to_queue, const TransportMessage& message) {
    Record(moved_, FromTransport(to_queue, message));
}

std::vector<RecordedMessage> TestHarness::Published() const {
    std::lock_guard lock(mutex_);
    return published_;
}
std::vector<RecordedMessage> TestHarness::Consumed() const {
    std::lock_guard lock(mutex_);
    return consumed_;
}
std::vector<RecordedMessage> TestHarness::Faulted() const {
    std::lock_guard lock(mutex_);
    return faulted_;
}
std::vector<RecordedMessage> TestHarness::Moved() const {
    std::lock_guard lock(mutex_);
    return moved_;
}

bool TestHarness::WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) const {
    const auto deadline = Clock::now() + timeout;
    std::unique_lock lock(mutex_);
    for (;;) {
        lock.unlock();
        if (condition()) return true;
        lock.lock();
        if (Clock::now() >= deadline) return false;
        // Wake on every recording; also re-check periodically for conditions on state outside the harness.
        changed_.wait_until(lock, std::min(deadline, Clock::now() + std::chrono::milliseconds(20)));
    }
}

}  // namespace messaging
