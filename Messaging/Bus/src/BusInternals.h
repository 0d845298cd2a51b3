// What the files of the bus share: a delivery in flight, the consumer journal's note of one, and the
// completion for a declaration nobody waits for. Private to Messaging/Bus/src.
#pragma once

#include <list>
#include <memory>
#include <string>

#include "Bus/Bus.h"

namespace messaging {

struct Bus::InFlight {
    ReceiveEndpoint* endpoint = nullptr;
    Delivery delivery;
    Envelope envelope;
    bool raw_json = false;  // read as raw JSON, not as an envelope
    TraceContext trace;     // the span its consumer works in
    LogFields log_fields;   // on every log line about this delivery: the trace id, and what the consumer adds
    const ReceiveEndpoint::Registration* registration = nullptr;
    int attempt = 0;
    std::chrono::steady_clock::time_point received_at;  // for the receive and saga durations
    std::string receive_error;                          // the exception type, when its body could not be read
    int busy_waits = 0;  // runs put off because the store was busy; no attempt counted for them
    std::unique_ptr<Timer> retry_timer;
    bool settled = false;
    std::list<std::shared_ptr<InFlight>>::iterator position;
};

// Notes a delivery in the journal for as long as it lives (its consumer's run); no journal, no note.
class Bus::JournalNote {
  public:
    JournalNote(ConsumerJournal* journal, const InFlight& in_flight) : journal_(journal) {
        if (journal_) journal_->Enter(JournalKey(in_flight), in_flight.envelope.message_id);
    }
    ~JournalNote() {
        if (journal_) journal_->Leave();
    }
    JournalNote(const JournalNote&) = delete;
    JournalNote& operator=(const JournalNote&) = delete;

  private:
    ConsumerJournal* journal_;
};

// A declaration the bus does not wait for: what follows it is ordered behind it by the transport,
// and a refusal fails what follows (a publish is not confirmed), so it only needs to be told.
Completion LogRefusal(std::string what);

}  // namespace messaging
