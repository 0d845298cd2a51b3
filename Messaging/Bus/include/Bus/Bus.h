// The message bus: publishes typed messages in MassTransit envelopes (or its raw JSON), sends
// requests and takes their answers at its temporary bus endpoint, and runs receive endpoints whose
// consume pipeline matches messages by URN, retries by policy, and on giving up publishes one
// Fault<T> and moves the message to `<queue>_error`; unmatched messages go to `<queue>_skipped`.
// A consumer's outgoing messages are sent after it returns (and, with a UnitOfWork, after its writes
// are committed), and the delivery is acked only when every one of them is confirmed (MassTransit's
// in-memory outbox). Loop thread only.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "Bus/BusMetrics.h"
#include "Bus/ConsumerJournal.h"
#include "Bus/KillSwitch.h"
#include "Bus/RetryPolicy.h"
#include "Contracts/Messages.h"
#include "Runtime/EventLoop.h"
#include "Runtime/LogContext.h"
#include "Runtime/UnitOfWork.h"
#include "Transport/Transport.h"
#include "Wire/Envelope.h"
#include "Wire/Faults.h"
#include "Wire/TraceContext.h"

namespace messaging {

// A serialized message ready for the transport.
struct OutgoingMessage {
    std::string exchange;
    TransportMessage message;
    // The URN of its type (the first of its messageType), for the send metrics; empty for a message
    // read back from an outbox, whose exchange then names it.
    std::string message_type = {};
};

// Thrown by a consumer for a failure that retrying cannot fix; the message faults at once.
class NonRetryableError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct SendOptions {
    contracts::OrderedJson headers = contracts::OrderedJson::object();  // extra envelope (and AMQP) headers
    std::string request_id = {};        // written as requestId: a request's id, or on a response the request's
    std::string response_address = {};  // written as responseAddress: where a request's answer goes
    // Written as the envelope's expirationTime and the AMQP expiration: the broker drops the message
    // unconsumed once it has waited this long, as MassTransit's TimeToLive.
    std::optional<std::chrono::milliseconds> time_to_live = {};
    // Outside a consumer, the span the message is sent from (an HTTP request's): the message then
    // carries a child span of it. A consumer's messages continue the consumed message's trace, and
    // any other message starts a new trace.
    std::optional<TraceContext> trace = {};
    // Written as MassTransit's raw JSON (the message alone, its envelope's fields in AMQP headers)
    // instead of an envelope. A consumer's messages follow its endpoint's serializer either way.
    bool raw_json = false;
};

// Hooks for the test harness and for logging; every call happens on the loop thread.
class BusObserver {
  public:
    virtual ~BusObserver() = default;
    virtual void OnPublished(const OutgoingMessage& /*message*/) {}
    virtual void OnConsumed(const std::string& /*queue*/, const Envelope& /*envelope*/, const std::string& /*urn*/) {}
    virtual void OnFaulted(const std::string& /*queue*/, const Envelope& /*envelope*/, const std::string& /*urn*/,
                           const std::string& /*error*/) {}
    virtual void OnMoved(const std::string& /*to_queue*/, const TransportMessage& /*message*/) {}
};

class Bus;

// The exchange an address names: "rabbitmq://host/vhost/name?temporary=true" -> "name".
std::string ExchangeOfAddress(const std::string& address);

// The exchange MassTransit declares before sending to an address: its name, and fanout, durable and
// not auto-delete unless the query says otherwise (temporary=true: neither durable nor kept;
// durable=, autodelete=, type=), as its RabbitMQ endpoint address reads them.
ExchangeSpec SendExchangeOfAddress(const std::string& address);

// The queue name MassTransit's direct reply-to request client puts in responseAddress
// (".../amq.rabbitmq.reply-to"): the answer goes to the default exchange, routed by the request's
// reply_to property, which the broker filled in for the requester's channel.
inline constexpr const char* kReplyToQueue = "amq.rabbitmq.reply-to";
bool IsReplyToAddress(const std::string& address);

// What a consumer sees of the message it handles, and how it replies.
class ConsumeContext {
  public:
    const Envelope& envelope() const { return envelope_; }
    const std::string& queue() const { return queue_; }
    int retry_attempt() const { return retry_attempt_; }  // 0 on the first attempt
    bool redelivered() const { return redelivered_; }
    // The span this consumer works in: it continues the consumed message's trace.
    const TraceContext& trace() const { return trace_; }
    // Adds a field (such as the order id) to every log line written about this delivery from now on,
    // by the consumer and by the bus after it.
    void AddLogField(const char* name, std::string value) { log_fields_.Set(name, std::move(value)); }

    template <class T>
    void Publish(const T& message, const SendOptions& options = {});
    template <class T>
    void Send(const std::string& queue, const T& message, const SendOptions& options = {});
    // Answers the consumed message as MassTransit's RespondAsync does: sent to its responseAddress
    // when it has one, else published; either way with its requestId.
    template <class T>
    void Respond(const T& message, SendOptions options = {});

    // The id this consumer correlates its work by, as a saga's CorrelationId: MassTransit writes it as
    // the initiatorId of every message sent from that consume context (instead of the consumed
    // message's correlationId). Must be a GUID.
    void SetCorrelationId(std::string correlation_id) { correlation_id_ = std::move(correlation_id); }

    // Hands over the messages published and sent so far: the caller now owns their delivery (an
    // outbox that stores them with the consumer's writes and publishes them itself), and the bus
    // acks the delivery without sending them. Without this call the bus sends them after the
    // consumer's unit of work commits and acks once the broker has confirmed them.
    std::vector<OutgoingMessage> TakeOutgoing() { return std::exchange(outgoing_, {}); }

  private:
    friend class Bus;
    ConsumeContext(Bus& bus, const Envelope& envelope, const MessageProperties& properties, std::string queue,
                   int retry_attempt, bool redelivered, const TraceContext& trace, LogFields& log_fields, bool raw_json)
        : bus_(bus),
          envelope_(envelope),
          properties_(properties),
          queue_(std::move(queue)),
          retry_attempt_(retry_attempt),
          redelivered_(redelivered),
          trace_(trace),
          log_fields_(log_fields),
          raw_json_(raw_json) {}

    Bus& bus_;
    const Envelope& envelope_;
    const MessageProperties& properties_;  // the delivery's AMQP properties
    std::string queue_;
    int retry_attempt_;
    bool redelivered_;
    const TraceContext& trace_;
    LogFields& log_fields_;
    bool raw_json_;  // what it sends is raw JSON: its endpoint's serializer
    std::string correlation_id_;
    std::vector<OutgoingMessage> outgoing_;
};

struct ReceiveEndpointSettings {
    std::string queue;
    std::uint16_t prefetch = 16;
    RetryPolicy retry = RetryPolicy::None();
    // Declared on the queue and copied onto its _error and _skipped queues, as MassTransit does;
    // QuorumQueueArguments() gives what MassTransit's SetQuorumQueue sets.
    HeaderTable queue_arguments = {};
    // At most this many messages in the consume pipeline at once (0: as many as the prefetch lets
    // in), as MassTransit's ConcurrentMessageLimit; later deliveries wait, unacked, in arrival order.
    int concurrent_message_limit = 0;
    KillSwitchSettings kill_switch = {};
    // How often a message may come back after its consumer ended the process before it faults to
    // `_error` instead of running again; 0: no limit. The bus's consumer journal (see BusSettings)
    // says which message that was, and a blamed message is sent to the queue again with
    // MT-Redelivery-Count raised, so the count lives in the message; other messages that come back
    // unsettled (prefetched, or the connection dropped) are not counted. Without a journal every
    // unsettled return counts: a quorum queue's x-delivery-count, or MT-Redelivery-Count raised.
    int redelivery_limit = 0;
    // As MassTransit's UseRawJsonSerializer on the endpoint: application/json deliveries are read as
    // raw JSON (envelopes still are read), and what its consumers send and publish, faults included,
    // is raw JSON with the envelope's fields in AMQP headers.
    bool raw_json = false;
    // As MassTransit's temporary endpoints (the bus endpoint): the queue and its exchange, and the
    // _error and _skipped queues with theirs, are neither durable nor kept once unused.
    bool temporary = false;
};

// x-queue-type "quorum", plus x-quorum-initial-group-size when `initial_group_size` is positive,
// applied to `arguments`; like MassTransit, it drops x-max-priority, which quorum queues refuse.
void SetQuorumQueue(HeaderTable& arguments, int initial_group_size = 0);

class ReceiveEndpoint {
  public:
    // `consumer_type` is the name written to MT-Fault-ConsumerType, e.g. "Inventory.CheckInventoryConsumer";
    // for a saga, its instance type ("Orders.OrderState").
    template <class T>
    void Handle(std::string consumer_type, std::function<void(ConsumeContext&, const T&)> handler) {
        Registration registration;
        registration.type = contracts::MessageContract<T>::Name();
        registration.urn = registration.type.Urn();
        registration.consumer_type = std::move(consumer_type);
        registration.kind =
            saga_types_.count(registration.consumer_type) ? ConsumerKind::kSaga : ConsumerKind::kConsumer;
        registration.message_type_label = MessageTypeLabel(registration.urn);
        registration.consumer_type_label = TypeNameWithoutNamespace(registration.consumer_type);
        registration.invoke = [handler = std::move(handler)](ConsumeContext& context) {
            const T message = contracts::MessageContract<T>::Read(context.envelope().message);
            handler(context, message);
        };
        registrations_.push_back(std::move(registration));
    }

    // The registrations of `consumer_type`, made before or after, are a saga's: its metrics count them
    // as MassTransit's saga instruments, not as consumes.
    void CountAsSaga(const std::string& consumer_type) {
        saga_types_.insert(consumer_type);
        for (auto& registration : registrations_)
            if (registration.consumer_type == consumer_type) registration.kind = ConsumerKind::kSaga;
    }

    const ReceiveEndpointSettings& settings() const { return settings_; }
    std::vector<contracts::MessageTypeName> ConsumedTypes() const;

  private:
    friend class Bus;
    struct Registration {
        contracts::MessageTypeName type;
        std::string urn;
        std::string consumer_type;
        std::function<void(ConsumeContext&)> invoke;
        ConsumerKind kind = ConsumerKind::kConsumer;
        std::string message_type_label;   // as MassTransit's metrics label it
        std::string consumer_type_label;  // as MassTransit's metrics label it
        // Where its attempts are counted, resolved at the first attempt (see BusMetrics).
        mutable const BusMetrics::ConsumeSeries* consume_series = nullptr;
    };
    explicit ReceiveEndpoint(ReceiveEndpointSettings settings) : settings_(std::move(settings)) {}
    const Registration* Match(const std::vector<std::string>& message_types) const;

    ReceiveEndpointSettings settings_;
    // A deque: the bus's response endpoint gains registrations while a delivery runs one of them.
    std::deque<Registration> registrations_;
    std::set<std::string> saga_types_;  // see CountAsSaga
    // The bus's response endpoint: a delivery is matched to the request it answers, and its queue,
    // exchange, _error and _skipped are temporary, as MassTransit's bus endpoint declares them.
    bool answers_requests_ = false;
    ConsumerId consumer_id_ = 0;
    bool consuming_ = false;
    int active_ = 0;                         // deliveries in the consume pipeline
    std::deque<Delivery> waiting_;           // held back by the concurrent message limit
    std::optional<KillSwitch> kill_switch_;  // when enabled
    std::unique_ptr<Timer> restart_timer_;   // runs while the kill switch holds the endpoint stopped
    const BusMetrics::ReceiveSeries* receive_series_ = nullptr;  // resolved at the first delivery
};

// What a request came to: one of the responses it accepts, the consumer's Fault<T>, or nothing.
struct RequestOutcome {
    enum class Kind {
        kResponse,  // an answer of an accepted type
        kFault,     // the consumer gave up: Fault<TRequest>, as MassTransit's RequestFaultException
        kTimeout,   // no answer within the timeout, as MassTransit's RequestTimeoutException
        kNotSent,   // the broker did not take the request
        kCanceled,  // the bus stopped before an answer came
    };
    Kind kind = Kind::kTimeout;
    std::string request_id = {};
    // kResponse and kFault: the answer's envelope as read.
    Envelope answer = {};
    // kResponse: the URN of the accepted type the answer was matched as.
    std::string response_type = {};
    // kFault: the first exception's message; otherwise, but for kResponse, what happened.
    std::string error = {};

    template <class T>
    bool Is() const {
        return kind == Kind::kResponse &&
               contracts::EqualsIgnoreCase(response_type, contracts::MessageContract<T>::Name().Urn());
    }
    // The answer as T; throws contracts::ContractError when it does not read as one.
    template <class T>
    T Read() const {
        return contracts::MessageContract<T>::Read(answer.message);
    }
};
using RequestCallback = std::function<void(RequestOutcome)>;

struct RequestOptions {
    // How long to wait for an answer, also the request's time to live: MassTransit's default.
    std::chrono::milliseconds timeout = std::chrono::seconds(30);
    // As SendOptions::trace: the span the request is sent from, if any.
    std::optional<TraceContext> trace = {};
};

struct BusSettings {
    std::string service_name;  // also the process name in host info and the bus address
    // Where the bus notes which message's consumer is running (a ConsumerJournal), so that after a
    // crash RedeliveryLimit counts only the message whose consumer ended the process. Open from
    // Start() to Stop() when an endpoint has a redelivery limit; empty: every unsettled return counts.
    std::string consumer_journal_path = {};
    // Whether sent messages carry trace headers (MT-Activity-Id, and the baggage when there is any):
    // a child span of the consumed message's trace, else a new trace. false sends none, as a
    // MassTransit bus with no activity listener; consumers still log the consumed trace id.
    bool propagate_trace = true;
    // Where the bus records MassTransit's instruments (BusMetrics); none: nothing is recorded.
    metrics::MetricsRegistry* metrics = nullptr;
};

class Bus {
  public:
    Bus(EventLoop& loop, Transport& transport, BusSettings settings);
    ~Bus();
    Bus(const Bus&) = delete;
    Bus& operator=(const Bus&) = delete;

    ReceiveEndpoint& AddReceiveEndpoint(ReceiveEndpointSettings settings);
    // Declares every endpoint's queue, exchange and consumed types' bindings, then consumes. `_error`,
    // `_skipped` and fault exchanges are declared on first use, as MassTransit declares them.
    Status Start();
    // Stops consuming, returns deliveries waiting for a retry to the queue (nack + requeue), and calls
    // `stopped` once no delivery is in flight.
    void Stop(std::function<void()> stopped);
    bool stopping() const { return stopping_; }

    // Declares the exchange for T (and the types it implements) so that messages of T can be published;
    // publishes made afterwards follow the declaration, and a refusal is logged.
    template <class T>
    void DeclarePublishTopology() {
        DeclareTopologyFor(contracts::MessageContract<T>::Name(), contracts::MessageContract<T>::ImplementedTypes());
    }

    // Builds the envelope for publishing T outside a consumer (an HTTP request, a timer).
    template <class T>
    OutgoingMessage PreparePublish(const T& message, const SendOptions& options = {}) {
        DeclarePublishTopology<T>();
        const std::string exchange = contracts::MessageContract<T>::Name().EntityName();
        return Build(exchange, contracts::MessageContract<T>::MessageTypes(),
                     contracts::MessageContract<T>::Write(message), {}, nullptr, options);
    }
    // Builds the envelope for sending T to a receive endpoint's exchange.
    template <class T>
    OutgoingMessage PrepareSend(const std::string& queue, const T& message, const SendOptions& options = {}) {
        return Build(queue, contracts::MessageContract<T>::MessageTypes(),
                     contracts::MessageContract<T>::Write(message), {}, nullptr, options);
    }

    // Publishes every message; `done` runs once, after all are confirmed or with the first failure.
    void Dispatch(std::vector<OutgoingMessage> messages, Completion done);
    // The same for one message, moved rather than copied (a braced list would copy it: the elements
    // of an initializer_list are const).
    void Dispatch(OutgoingMessage message, Completion done);

    template <class T>
    void Publish(const T& message, Completion done) {
        Dispatch(PreparePublish(message), std::move(done));
    }

    // Asks as MassTransit's request client does: sends `message` to `queue` (publishes it when
    // `queue` is empty) with a new requestId, the bus address as responseAddress, the accepted types
    // in MT-Request-AcceptType and the timeout as its time to live. The answer comes to the bus's
    // temporary endpoint, declared and consumed with the first request. `answered` runs once, on the
    // loop: with the first answer of a type in TResponses or Fault<TRequest>, or when the timeout
    // passes, the send fails or the bus stops. An answer no request waits for (a late one) goes to
    // the endpoint's _skipped queue. Returns the request id.
    template <class TRequest, class... TResponses>
    std::string Request(const std::string& queue, const TRequest& message, RequestCallback answered,
                        const RequestOptions& options = {}) {
        static_assert(sizeof...(TResponses) > 0, "a request accepts at least one response type");
        using Contract = contracts::MessageContract<TRequest>;
        return SendRequest(queue, Contract::Name(), Contract::ImplementedTypes(), Contract::MessageTypes(),
                           Contract::Write(message), {contracts::MessageContract<TResponses>::Name()...},
                           std::move(answered), options);
    }

    void SetObserver(BusObserver* observer) { observer_ = observer; }
    // Consumers then run as units of `unit_of_work`, and their messages wait for its commit.
    void SetUnitOfWork(UnitOfWork* unit_of_work) { unit_of_work_ = unit_of_work; }
    std::string InputAddress(const std::string& queue) const { return base_address_ + queue; }
    std::string Address(const std::string& exchange) const { return base_address_ + exchange; }
    const std::string& BusAddress() const { return bus_address_; }
    const contracts::HostInfo& host() const { return host_; }
    EventLoop& loop() { return loop_; }
    Transport& transport() { return transport_; }
    // Each receive endpoint's queue and whether the broker is delivering to it now.
    struct EndpointHealth {
        std::string queue;
        bool consuming = false;
        bool kill_switch_tripped = false;  // stopped by its kill switch until the restart timeout
        std::string problem;               // why the broker delivers nothing although it took the consumer
    };
    std::vector<EndpointHealth> EndpointsHealth() const;

  private:
    friend class ConsumeContext;
    struct InFlight;

    void DeclareTopologyFor(const contracts::MessageTypeName& type,
                            const std::vector<contracts::MessageTypeName>& implemented);
    // Declares a queue with its same-named exchange the first time it is needed, as MassTransit
    // declares `_error` and `_skipped` on the first move.
    void DeclareQueueOnce(const std::string& queue, const HeaderTable& arguments, bool temporary);
    // Declares an address's exchange the first time something is sent to it, as MassTransit's send
    // endpoint does: publishing to an exchange that does not exist would close the channel and the
    // connection, and the delivery, returned to its queue, would try again for ever.
    void DeclareSendExchangeOnce(const std::string& address);
    // An answer to the consumed message (a response or a fault) for `address`: to its exchange, or for
    // a direct reply-to address to the default exchange with the request's reply_to as routing key.
    // Throws NonRetryableError for a reply-to address when the request carries no reply_to.
    OutgoingMessage BuildAnswer(const std::string& address, std::vector<std::string> message_types,
                                contracts::OrderedJson message, std::string correlation_id,
                                const ConsumeContext& parent, const SendOptions& options);
    // `source_queue` names the input address to write as sourceAddress when there is no parent
    // (a receive fault); otherwise the bus address is written.
    OutgoingMessage Build(const std::string& exchange, std::vector<std::string> message_types,
                          contracts::OrderedJson message, std::string correlation_id, const ConsumeContext* parent,
                          const SendOptions& options, const std::string& source_queue = {});

    std::string SendRequest(const std::string& queue, const contracts::MessageTypeName& type,
                            const std::vector<contracts::MessageTypeName>& implemented,
                            std::vector<std::string> message_types, contracts::OrderedJson message,
                            const std::vector<contracts::MessageTypeName>& responses, RequestCallback answered,
                            const RequestOptions& options);
    // Declares the bus's temporary endpoint and consumes it, once per start of the bus.
    void StartResponseEndpoint();
    // The registration of the response endpoint for an answer of `type` (a response or a fault).
    void AcceptAnswers(const contracts::MessageTypeName& type, bool fault);
    // The registration an answer runs: the request with its requestId must wait for one of its types.
    const ReceiveEndpoint::Registration* MatchAnswer(const Envelope& envelope) const;
    // Ends the request with `outcome`: its timer stops and its callback runs, once.
    void FinishRequest(const std::string& request_id, RequestOutcome outcome);

    void StartConsuming(ReceiveEndpoint& endpoint);
    void OnDelivery(ReceiveEndpoint& endpoint, Delivery delivery);
    // Takes a delivery into the consume pipeline: parse, match, first attempt.
    void Begin(ReceiveEndpoint& endpoint, Delivery delivery);
    // Counts the attempt for the kill switch, then the redelivery, then runs the consumer.
    void ConsumeMatched(const std::shared_ptr<InFlight>& in_flight);
    // For a delivery that came back unsettled: true when it was taken care of here (sent to the queue
    // again with its count raised, or past the limit faulted to `_error`), false to consume it.
    bool CountRedelivery(const std::shared_ptr<InFlight>& in_flight);
    static std::uint64_t JournalKey(const InFlight& in_flight);
    class JournalNote;
    // Starts the deliveries the concurrent message limit held back, as far as it now allows.
    void BeginWaiting(ReceiveEndpoint& endpoint);
    // Returns the held-back deliveries to the queue.
    void ReturnWaiting(ReceiveEndpoint& endpoint);
    // Stops consuming until the kill switch's restart timeout has passed.
    void TripKillSwitch(ReceiveEndpoint& endpoint);
    void RunAttempt(const std::shared_ptr<InFlight>& in_flight);
    // A move the broker refused because the destination queue exists with other arguments: the
    // message stays in its queue (returned after a short hold), and the declaration is tried again
    // after a back-off that doubles up to five minutes.
    void HoldRefusedMove(const std::shared_ptr<InFlight>& in_flight, const std::string& destination,
                         const Status& refusal);
    // Runs `step` for the delivery on a later loop turn, `delay` from now (its retry timer), unless the
    // delivery is gone by then.
    void Later(const std::shared_ptr<InFlight>& in_flight, std::chrono::milliseconds delay,
               void (Bus::*step)(const std::shared_ptr<InFlight>&));
    void ReturnAfterHold(const std::shared_ptr<InFlight>& in_flight);  // returns it to its queue
    // Runs the delivery again later because the store was busy (StoreBusy), counting no attempt.
    void WaitForStore(const std::shared_ptr<InFlight>& in_flight, const std::string& reason);
    void Release(const std::shared_ptr<InFlight>& in_flight, std::vector<OutgoingMessage> outgoing);
    // Nack with requeue after a commit or a publish failed; `what` names what failed, for the log.
    void ReturnToQueue(const std::shared_ptr<InFlight>& in_flight, const char* what, const Status& status);
    void GiveUp(const std::shared_ptr<InFlight>& in_flight, const std::string& exception_type,
                const std::string& exception_message);
    void MoveToError(const std::shared_ptr<InFlight>& in_flight, const std::string& exception_type,
                     const std::string& exception_message, std::vector<OutgoingMessage> also_publish);
    void MoveToSkipped(const std::shared_ptr<InFlight>& in_flight);
    // Publishes `also_publish` and, mandatory, the copy to `destination` (an `_error` or `_skipped`
    // queue); acks the delivery once the broker confirmed all of them, else returns it to its queue.
    void Move(const std::shared_ptr<InFlight>& in_flight, const std::string& destination, TransportMessage copy,
              std::vector<OutgoingMessage> also_publish);
    // Publishes the copy; when the broker returns it, declares the queue again and publishes anew,
    // at most `attempts_left` times in all.
    void PublishMovedCopy(const std::string& queue, const HeaderTable& arguments, bool temporary, TransportMessage copy,
                          int attempts_left, Completion done);
    static constexpr int kMovePublishAttempts = 3;
    // MassTransit's ReceiveFault for a body that could not be read: published beside the _error copy.
    OutgoingMessage BuildReceiveFault(const std::shared_ptr<InFlight>& in_flight, const std::string& exception_type,
                                      const std::string& exception_message);
    void Settle(const std::shared_ptr<InFlight>& in_flight, bool ack);

    EventLoop& loop_;
    Transport& transport_;
    BusSettings settings_;
    contracts::HostInfo host_;
    // The transport's address, fixed by its settings: built once, as every message sent names it.
    std::string base_address_;
    std::string bus_address_;
    std::list<ReceiveEndpoint> endpoints_;
    // The bus endpoint answers to requests come to, once the first request is sent.
    std::unique_ptr<ReceiveEndpoint> response_endpoint_;
    struct PendingRequest {
        std::vector<std::string> answer_types;  // URNs: the accepted responses, then Fault<TRequest>
        RequestCallback answered;
        std::unique_ptr<Timer> timeout;
    };
    std::map<std::string, PendingRequest> pending_requests_;  // by request id
    std::vector<std::string> declared_types_;
    std::vector<std::string> declared_queues_;
    std::set<std::string> declared_send_exchanges_;
    // `_error`/`_skipped` queues the broker refused (one exists with other arguments): when their
    // declaration is tried again, and how long to wait after that before the next try.
    struct RefusedQueue {
        std::chrono::steady_clock::time_point retry_at;
        std::chrono::milliseconds delay;
        bool asked_again = false;  // declared again since the last refusal
    };
    std::map<std::string, RefusedQueue> refused_queues_;
    // Message ids being sent to their queue again with a raised redelivery count, each with the
    // deliveries of its copy that arrived before the original's ack was sent.
    std::map<std::string, std::vector<std::shared_ptr<InFlight>>> resending_;
    std::list<std::shared_ptr<InFlight>> in_flight_;
    std::unique_ptr<ConsumerJournal> journal_;  // open when an endpoint has a redelivery limit and a path is set
    std::unique_ptr<BusMetrics> metrics_;       // when the settings name a registry
    BusObserver* observer_ = nullptr;
    UnitOfWork* unit_of_work_ = nullptr;
    bool stopping_ = false;
    std::function<void()> on_stopped_;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

template <class T>
void ConsumeContext::Publish(const T& message, const SendOptions& options) {
    bus_.DeclarePublishTopology<T>();
    outgoing_.push_back(bus_.Build(contracts::MessageContract<T>::Name().EntityName(),
                                   contracts::MessageContract<T>::MessageTypes(),
                                   contracts::MessageContract<T>::Write(message), {}, this, options));
}

template <class T>
void ConsumeContext::Respond(const T& message, SendOptions options) {
    options.request_id = envelope_.request_id;
    if (envelope_.response_address.empty()) return Publish(message, options);
    outgoing_.push_back(bus_.BuildAnswer(envelope_.response_address, contracts::MessageContract<T>::MessageTypes(),
                                         contracts::MessageContract<T>::Write(message), {}, *this, options));
}

template <class T>
void ConsumeContext::Send(const std::string& queue, const T& message, const SendOptions& options) {
    outgoing_.push_back(bus_.Build(queue, contracts::MessageContract<T>::MessageTypes(),
                                   contracts::MessageContract<T>::Write(message), {}, this, options));
}

}  // namespace messaging
