// Redelivery: counting the times a message came back, and the consumer journal's key for it.
#include "Bus/Bus.h"

#include <spdlog/spdlog.h>

#include <cstdint>

#include "BusInternals.h"

namespace messaging {

namespace {

// A count carried in a header, 0 when absent; kept within int.
int HeaderCount(const HeaderTable& headers, const char* name) {
    const HeaderValue* value = FindHeader(headers, name);
    return value ? static_cast<int>(std::clamp<std::int64_t>(HeaderToInteger(*value), 0, INT32_MAX)) : 0;
}

}  // namespace

// What names a delivery in the consumer journal: the same for every return and copy of a message.
std::uint64_t Bus::JournalKey(const InFlight& in_flight) {
    return ConsumerJournal::Key(in_flight.endpoint->settings_.queue, in_flight.envelope.message_id,
                                in_flight.delivery.message.body);
}

bool Bus::CountRedelivery(const std::shared_ptr<InFlight>& in_flight) {
    const ReceiveEndpointSettings& settings = in_flight->endpoint->settings_;
    const TransportMessage& message = in_flight->delivery.message;
    const std::string& message_id = in_flight->envelope.message_id;
    if (!resending_.empty()) {
        // The copy of a message whose original is not acked yet: were it consumed now and ended the
        // process, both would come back, and the original, without a count, would be sent again for
        // ever. It waits until the original's ack is on its way.
        if (auto original = resending_.find(message_id); original != resending_.end()) {
            original->second.push_back(in_flight);
            return true;
        }
    }
    // With a journal, only a message whose consumer ended a process counts, once per process, and
    // the count rides in the message. Without one, every return counts: a quorum queue counts them
    // itself; otherwise this return adds one to the message's count.
    const bool broker_counts = !journal_ && FindHeader(message.properties.headers, "x-delivery-count") != nullptr;
    if (!broker_counts && !in_flight->delivery.redelivered) return false;
    if (journal_ && !journal_->TakeBlame(JournalKey(*in_flight))) return false;
    const int count = broker_counts ? HeaderCount(message.properties.headers, "x-delivery-count")
                                    : HeaderCount(message.properties.headers, "MT-Redelivery-Count") + 1;
    if (count > settings.redelivery_limit) {
        GiveUp(in_flight, "messaging.RedeliveryLimitExceeded",
               journal_ ? "Its consumer was running when the process ended, " + std::to_string(count) +
                              " times (the limit is " + std::to_string(settings.redelivery_limit) + ")"
                        : "The message came back unsettled " + std::to_string(count) + " times (the limit is " +
                              std::to_string(settings.redelivery_limit) +
                              "): its consumer may be ending the process or the connection");
        return true;
    }
    if (broker_counts) return false;
    spdlog::warn("{}: {} came back {}; sending it to the queue again with MT-Redelivery-Count {}", settings.queue,
                 in_flight->envelope.message_id, journal_ ? "after its consumer ended the process" : "unsettled",
                 count);
    TransportMessage again = message;
    again.properties.headers["MT-Redelivery-Count"] = static_cast<std::int32_t>(count);
    again.mandatory = true;
    resending_.try_emplace(message_id);
    std::weak_ptr<bool> alive = alive_;
    // The original is acked only once the broker holds the copy with the new count, and the ack is
    // written out at once, before the copy (held back meanwhile) may run.
    transport_.Publish(settings.queue, std::move(again), [this, alive, in_flight](const Status& status) {
        if (alive.expired()) return;
        LogScope log_scope(in_flight->log_fields);
        if (!status.ok())
            spdlog::warn("{}: sending {} again failed ({}); returning it to the queue",
                         in_flight->endpoint->settings_.queue, in_flight->envelope.message_id, status.message());
        Settle(in_flight, status.ok());
        transport_.SendPendingAcks();
        auto held = resending_.extract(in_flight->envelope.message_id);
        if (held.empty()) return;
        for (auto& copy : held.mapped())
            loop_.Post([this, alive, copy] {
                if (alive.expired()) return;
                if (stopping_) return Settle(copy, /*ack=*/false);
                // Counted afresh: a copy that was itself redelivered may be past the limit.
                if (CountRedelivery(copy)) return;
                RunAttempt(copy);
            });
    });
    return true;
}

}  // namespace messaging
