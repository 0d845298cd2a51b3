#include "Bus/Bus.h"

#include <cxxabi.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>

#include "Wire/RawJson.h"

namespace messaging {
namespace {

// The C++ type of the exception being handled, written the way .NET writes type names
// ("payment_service::GatewayUnavailable" -> "payment_service.GatewayUnavailable").
std::string CurrentExceptionTypeName() {
    const std::type_info* type = abi::__cxa_current_exception_type();
    if (!type) return "System.Exception";
    int status = 0;
    char* demangled = abi::__cxa_demangle(type->name(), nullptr, nullptr, &status);
    std::string name = status == 0 && demangled ? demangled : type->name();
    std::free(demangled);
    std::string out;
    for (std::size_t i = 0; i < name.size(); ++i) {
        if (name.compare(i, 2, "::") == 0) {
            out.push_back('.');
            ++i;
        } else {
            out.push_back(name[i]);
        }
    }
    return out;
}

// The stack trace a fault names for a consumer, as .NET would print its Consume frame.
std::string ConsumeStackTrace(const auto& registration) {
    return "   at " + registration.consumer_type + ".Consume(" + registration.type.DotNetName() + ")";
}

std::string NewBusAddressName(const contracts::HostInfo& host) {
    auto alnum = [](const std::string& text) {
        std::string out;
        for (char c : text)
            if (std::isalnum(static_cast<unsigned char>(c))) out.push_back(c);
        return out;
    };
    static constexpr char kZBase32[] = "ybndrfg8ejkmcpqxot1uwisza345h769";
    std::random_device device;
    std::string id;
    for (int i = 0; i < 26; ++i) id.push_back(kZBase32[device() % 32]);
    std::string name = alnum(host.machine_name) + "_" + alnum(host.process_name) + "_bus_" + id;
    if (name.size() > 72) name = name.substr(name.size() - 72);
    return name;
}

HeaderTable AmqpHeadersFrom(const contracts::Json& headers) {
    HeaderTable table;
    for (auto it = headers.begin(); it != headers.end(); ++it) {
        const auto& value = it.value();
        if (value.is_string()) {
            table[it.key()] = value.get<std::string>();
        } else if (value.is_number_integer()) {
            const auto number = value.get<std::int64_t>();
            if (number >= INT32_MIN && number <= INT32_MAX)
                table[it.key()] = static_cast<std::int32_t>(number);
            else
                table[it.key()] = number;
        } else if (value.is_boolean() && value.get<bool>()) {
            table[it.key()] = std::string("True");
        }
    }
    return table;
}

}  // namespace

struct Bus::InFlight {
    ReceiveEndpoint* endpoint = nullptr;
    Delivery delivery;
    Envelope envelope;
    bool raw_json = false;  // read as raw JSON, not as an envelope
    TraceContext trace;     // the span its consumer works in
    LogFields log_fields;   // on every log line about this delivery: the trace id, and what the consumer adds
    const ReceiveEndpoint::Registration* registration = nullptr;
    int attempt = 0;
    int busy_waits = 0;  // runs put off because the store was busy; no attempt counted for them
    std::unique_ptr<Timer> retry_timer;
    bool settled = false;
    std::list<std::shared_ptr<InFlight>>::iterator position;
};

std::vector<contracts::MessageTypeName> ReceiveEndpoint::ConsumedTypes() const {
    std::vector<contracts::MessageTypeName> types;
    for (const auto& registration : registrations_) types.push_back(registration.type);
    return types;
}

const ReceiveEndpoint::Registration* ReceiveEndpoint::Match(const std::vector<std::string>& message_types) const {
    for (const auto& urn : message_types)
        for (const auto& registration : registrations_)
            if (contracts::EqualsIgnoreCase(urn, registration.urn)) return &registration;
    return nullptr;
}

Bus::Bus(EventLoop& loop, Transport& transport, BusSettings settings)
    : loop_(loop),
      transport_(transport),
      settings_(std::move(settings)),
      host_(CurrentHostInfo(settings_.service_name)),
      base_address_(transport_.BaseAddress()) {
    bus_address_ = base_address_ + NewBusAddressName(host_) + "?temporary=true";
}

Bus::~Bus() {
    *alive_ = false;
    for (auto& endpoint : endpoints_)
        if (endpoint.consuming_) transport_.Cancel(endpoint.consumer_id_);
    if (response_endpoint_ && response_endpoint_->consuming_) transport_.Cancel(response_endpoint_->consumer_id_);
}

std::string ExchangeOfAddress(const std::string& address) {
    std::string path = address.substr(0, address.find('?'));
    return path.substr(path.rfind('/') + 1);
}

ExchangeSpec SendExchangeOfAddress(const std::string& address) {
    ExchangeSpec spec{.name = ExchangeOfAddress(address)};
    const auto question = address.find('?');
    if (question == std::string::npos) return spec;
    std::string_view query = std::string_view(address).substr(question + 1);
    auto as_bool = [](std::string_view value) -> std::optional<bool> {
        if (contracts::EqualsIgnoreCase(value, "true")) return true;
        if (contracts::EqualsIgnoreCase(value, "false")) return false;
        return std::nullopt;
    };
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        const auto equals = pair.find('=');
        if (equals == std::string_view::npos) continue;
        const std::string_view key = pair.substr(0, equals);
        const std::string_view value = pair.substr(equals + 1);
        if (key == "temporary") {
            if (auto temporary = as_bool(value)) {
                spec.auto_delete = *temporary;
                spec.durable = !*temporary;
            }
        } else if (key == "durable") {
            if (auto durable = as_bool(value)) spec.durable = *durable;
        } else if (key == "autodelete") {
            if (auto auto_delete = as_bool(value)) spec.auto_delete = *auto_delete;
        } else if (key == "type" && !value.empty()) {
            spec.type = value;
        }
    }
    return spec;
}

bool IsReplyToAddress(const std::string& address) {
    return ExchangeOfAddress(address) == kReplyToQueue;
}

ReceiveEndpoint& Bus::AddReceiveEndpoint(ReceiveEndpointSettings settings) {
    endpoints_.push_back(ReceiveEndpoint(std::move(settings)));
    ReceiveEndpoint& endpoint = endpoints_.back();
    if (endpoint.settings_.kill_switch.enabled)
        endpoint.kill_switch_.emplace(endpoint.settings_.kill_switch, KillSwitch::Clock::now());
    return endpoint;
}

namespace {
// A declaration the bus does not wait for: what follows it is ordered behind it by the transport,
// and a refusal fails what follows (a publish is not confirmed), so it only needs to be told.
Completion LogRefusal(std::string what) {
    return [what = std::move(what)](const Status& status) {
        if (!status.ok()) spdlog::error("declaring {} failed: {}", what, status.message());
    };
}
}  // namespace

void Bus::DeclareTopologyFor(const contracts::MessageTypeName& type,
                             const std::vector<contracts::MessageTypeName>& implemented) {
    const std::string name = type.EntityName();
    if (std::find(declared_types_.begin(), declared_types_.end(), name) != declared_types_.end()) return;
    declared_types_.push_back(name);
    transport_.Declare(PublishTopology(type, implemented), LogRefusal("the exchange of " + name));
}

std::vector<Bus::EndpointHealth> Bus::EndpointsHealth() const {
    std::vector<EndpointHealth> health;
    for (const auto& endpoint : endpoints_)
        health.push_back({.queue = endpoint.settings_.queue,
                          .consuming = endpoint.consuming_ && transport_.IsConsuming(endpoint.consumer_id_),
                          .kill_switch_tripped =
                              endpoint.kill_switch_ && endpoint.kill_switch_->state() == KillSwitch::State::kStopped,
                          .problem = transport_.ConsumerProblem(endpoint.consumer_id_)});
    return health;
}

void SetQuorumQueue(HeaderTable& arguments, int initial_group_size) {
    arguments["x-queue-type"] = std::string("quorum");
    arguments.erase("x-max-priority");
    if (initial_group_size > 0)
        arguments["x-quorum-initial-group-size"] = static_cast<std::int32_t>(initial_group_size);
}

void Bus::DeclareSendExchangeOnce(const std::string& address) {
    ExchangeSpec spec = SendExchangeOfAddress(address);
    // The default exchange and the broker's own amq.* exchanges exist and cannot be declared.
    if (spec.name.empty() || spec.name.starts_with("amq.")) return;
    if (!declared_send_exchanges_.insert(spec.name).second) return;
    Topology topology;
    topology.exchanges.push_back(std::move(spec));
    topology.borrowed = true;
    transport_.Declare(topology, LogRefusal("the exchange of " + address));
}

void Bus::DeclareQueueOnce(const std::string& queue, const HeaderTable& arguments, bool temporary) {
    if (std::find(declared_queues_.begin(), declared_queues_.end(), queue) != declared_queues_.end()) return;
    declared_queues_.push_back(queue);
    Topology topology = QueueWithExchange(queue, arguments, temporary);
    topology.on_demand = true;  // a refusal holds back only the messages moved there
    transport_.Declare(topology, LogRefusal("the queue " + queue));
}

Status Bus::Start() {
    stopping_ = false;
    const bool limits_redelivery = std::any_of(endpoints_.begin(), endpoints_.end(), [](const ReceiveEndpoint& e) {
        return e.settings_.redelivery_limit > 0;
    });
    if (limits_redelivery && !settings_.consumer_journal_path.empty() && !journal_) {
        try {
            journal_ = std::make_unique<ConsumerJournal>(settings_.consumer_journal_path);
        } catch (const std::runtime_error& e) {
            return Status::Unavailable(e.what());
        }
        std::string blamed;
        for (const auto& id : journal_->BlamedIds()) blamed += (blamed.empty() ? "" : ", ") + id;
        if (!blamed.empty())
            spdlog::warn("a process ended while the consumer of {} was running; each is counted when it comes back",
                         blamed);
    }
    for (auto& endpoint : endpoints_) {
        const auto consumed = endpoint.ConsumedTypes();
        transport_.Declare(
            ReceiveEndpointTopology(endpoint.settings_.queue, consumed, endpoint.settings_.queue_arguments),
            LogRefusal("the receive endpoint " + endpoint.settings_.queue));
    }
    if (response_endpoint_) StartResponseEndpoint();
    for (auto& endpoint : endpoints_) {
        StartConsuming(endpoint);
        const auto& settings = endpoint.settings_;
        spdlog::info("consuming {} (prefetch {}, concurrent message limit {}, retry {}, kill switch {})",
                     settings.queue, settings.prefetch,
                     settings.concurrent_message_limit > 0 ? std::to_string(settings.concurrent_message_limit)
                                                           : std::string("none"),
                     settings.retry.Describe(),
                     settings.kill_switch.enabled
                         ? std::to_string(settings.kill_switch.trip_threshold) + "% of more than " +
                               std::to_string(settings.kill_switch.activation_threshold) + " messages"
                         : std::string("off"));
    }
    return Status::Ok();
}

void Bus::StartConsuming(ReceiveEndpoint& endpoint) {
    ReceiveEndpoint* target = &endpoint;
    endpoint.consumer_id_ =
        transport_.Consume(endpoint.settings_.queue, endpoint.settings_.prefetch,
                           [this, target](Delivery delivery) { OnDelivery(*target, std::move(delivery)); });
    endpoint.consuming_ = true;
}

void Bus::TripKillSwitch(ReceiveEndpoint& endpoint) {
    const auto& settings = endpoint.settings_.kill_switch;
    spdlog::error("{}: kill switch tripped ({}); not consuming for {} s", endpoint.settings_.queue,
                  endpoint.kill_switch_->Describe(),
                  std::chrono::duration_cast<std::chrono::seconds>(settings.restart_timeout).count());
    if (endpoint.consuming_) transport_.Cancel(endpoint.consumer_id_);
    endpoint.consuming_ = false;
    ReturnWaiting(endpoint);
    endpoint.restart_timer_ = std::make_unique<Timer>(loop_);
    ReceiveEndpoint* target = &endpoint;
    endpoint.restart_timer_->Start(settings.restart_timeout, [this, target] {
        if (stopping_ || target->consuming_) return;
        target->kill_switch_->OnRestarted(KillSwitch::Clock::now());
        StartConsuming(*target);
        spdlog::info("{}: kill switch restarts the endpoint; one more failure stops it again", target->settings_.queue);
    });
}

void Bus::ReturnWaiting(ReceiveEndpoint& endpoint) {
    auto waiting = std::exchange(endpoint.waiting_, {});
    for (const auto& delivery : waiting) transport_.Nack(delivery, /*requeue=*/true);
}

void Bus::BeginWaiting(ReceiveEndpoint& endpoint) {
    const int limit = endpoint.settings_.concurrent_message_limit;
    while (!endpoint.waiting_.empty() && (limit == 0 || endpoint.active_ < limit)) {
        Delivery next = std::move(endpoint.waiting_.front());
        endpoint.waiting_.pop_front();
        Begin(endpoint, std::move(next));
    }
}

void Bus::Stop(std::function<void()> stopped) {
    stopping_ = true;
    for (auto& endpoint : endpoints_) {
        if (endpoint.consuming_) transport_.Cancel(endpoint.consumer_id_);
        endpoint.consuming_ = false;
        endpoint.restart_timer_.reset();
        ReturnWaiting(endpoint);
    }
    if (response_endpoint_ && response_endpoint_->consuming_) {
        transport_.Cancel(response_endpoint_->consumer_id_);
        response_endpoint_->consuming_ = false;
    }
    // No answer can come now: every request still waiting ends, as MassTransit cancels them.
    while (!pending_requests_.empty())
        FinishRequest(pending_requests_.begin()->first,
                      {.kind = RequestOutcome::Kind::kCanceled, .error = "the bus stopped before an answer came"});
    // A delivery waiting for a retry goes back to the queue; one being published finishes.
    std::vector<std::shared_ptr<InFlight>> waiting;
    for (auto& in_flight : in_flight_)
        if (in_flight->retry_timer) waiting.push_back(in_flight);
    for (auto& in_flight : waiting) {
        in_flight->retry_timer.reset();
        Settle(in_flight, /*ack=*/false);
    }
    // No consumer runs any more; Start opens the journal again and reads what it holds then.
    journal_.reset();
    if (in_flight_.empty()) {
        if (stopped) stopped();
    } else {
        on_stopped_ = std::move(stopped);
    }
}

OutgoingMessage Bus::Build(const std::string& exchange, std::vector<std::string> message_types,
                           contracts::OrderedJson message, std::string correlation_id, const ConsumeContext* parent,
                           const SendOptions& options, const std::string& source_queue) {
    Envelope envelope;
    envelope.message_id = contracts::Guid::New().ToString();
    envelope.correlation_id = std::move(correlation_id);
    if (parent) {
        const Envelope& consumed = parent->envelope();
        envelope.conversation_id =
            consumed.conversation_id.empty() ? contracts::Guid::New().ToString() : consumed.conversation_id;
        envelope.initiator_id = !parent->correlation_id_.empty()   ? parent->correlation_id_
                                : !consumed.correlation_id.empty() ? consumed.correlation_id
                                                                   : consumed.request_id;
        envelope.source_address = InputAddress(parent->queue());
        for (auto it = consumed.headers.begin(); it != consumed.headers.end(); ++it)
            if (!contracts::StartsWithIgnoreCase(it.key(), "MT-")) envelope.headers[it.key()] = it.value();
    } else {
        envelope.conversation_id = contracts::Guid::New().ToString();
        envelope.source_address = source_queue.empty() ? bus_address_ : InputAddress(source_queue);
    }
    for (auto it = options.headers.begin(); it != options.headers.end(); ++it) envelope.headers[it.key()] = it.value();
    // Without propagation the message has no trace headers: the consumed message's were not copied
    // above, as their names start with MT-.
    if (settings_.propagate_trace) {
        if (const TraceContext* trace = parent ? &parent->trace_ : options.trace ? &*options.trace : nullptr)
            WriteChildSpanHeaders(*trace, envelope.headers);
        else
            WriteTraceHeaders(TraceContext::NewRoot(), envelope.headers);
    }
    envelope.request_id = options.request_id;
    envelope.response_address = options.response_address;
    envelope.destination_address = Address(exchange);
    envelope.message_type = std::move(message_types);
    envelope.sent_time = contracts::UtcNow();
    if (options.time_to_live) envelope.expiration_time = envelope.sent_time + *options.time_to_live;
    envelope.host = host_;

    OutgoingMessage outgoing;
    outgoing.exchange = exchange;
    auto& properties = outgoing.message.properties;
    properties.message_id = envelope.message_id;
    properties.correlation_id = envelope.correlation_id;
    properties.delivery_mode = 2;
    properties.headers = AmqpHeadersFrom(envelope.headers);
    if (options.raw_json || (parent && parent->raw_json_)) {
        // The message alone; the envelope's fields travel in AMQP headers, as MassTransit's raw
        // serializer sends them (an expirationTime has no header: the AMQP expiration carries it).
        outgoing.message.body = message.dump(-1, ' ', false, contracts::OrderedJson::error_handler_t::replace);
        properties.content_type = kRawJsonContentType;
        WriteRawJsonHeaders(envelope, properties.headers);
    } else {
        outgoing.message.body = SerializeEnvelope(envelope, message);
        properties.content_type = kEnvelopeContentType;
    }
    // In whole milliseconds, as MassTransit writes it; at least one second, as MassTransit (a zero
    // expiration would drop a message no consumer is waiting for at that very moment).
    if (options.time_to_live)
        properties.expiration =
            std::to_string(options.time_to_live->count() > 0 ? options.time_to_live->count() : std::int64_t{1000});
    return outgoing;
}

void Bus::Dispatch(OutgoingMessage message, Completion done) {
    std::vector<OutgoingMessage> messages;
    messages.push_back(std::move(message));
    Dispatch(std::move(messages), std::move(done));
}

void Bus::Dispatch(std::vector<OutgoingMessage> messages, Completion done) {
    if (messages.empty()) {
        done(Status::Ok());
        return;
    }
    struct Pending {
        std::size_t remaining;
        Status first_error;
        Completion done;
    };
    auto pending = std::make_shared<Pending>(Pending{messages.size(), Status::Ok(), std::move(done)});
    // Completions that arrive after the bus (and whoever asked it to publish) is gone are dropped.
    std::weak_ptr<bool> alive = alive_;
    for (auto& outgoing : messages) {
        if (observer_) observer_->OnPublished(outgoing);
        const std::string exchange = outgoing.exchange;
        transport_.Publish(exchange, std::move(outgoing.message), [pending, alive](const Status& status) {
            // The first error, but one refused for good gives way to one that may pass on a retry.
            if (!status.ok() &&
                (pending->first_error.ok() || pending->first_error.code() == StatusCode::kPermissionDenied))
                pending->first_error = status;
            if (--pending->remaining == 0 && !alive.expired()) pending->done(pending->first_error);
        });
    }
}

namespace {
// MassTransit's bus endpoint queue expires after a minute without a consumer (x-expires), so a
// process that ended without deleting it leaves nothing behind for long.
constexpr std::int64_t kResponseQueueExpiresMs = 60000;
constexpr std::uint16_t kResponsePrefetch = 16;

// The first exception message of a Fault<T> body, as a request's error.
std::string FaultMessage(const contracts::Json& fault) {
    if (fault.is_object())
        if (auto exceptions = fault.find("exceptions"); exceptions != fault.end() && exceptions->is_array())
            for (const auto& exception : *exceptions)
                if (auto text = exception.find("message"); text != exception.end() && text->is_string())
                    return text->get<std::string>();
    return "the consumer faulted without an exception message";
}
}  // namespace

std::string Bus::SendRequest(const std::string& queue, const contracts::MessageTypeName& type,
                             const std::vector<contracts::MessageTypeName>& implemented,
                             std::vector<std::string> message_types, contracts::OrderedJson message,
                             const std::vector<contracts::MessageTypeName>& responses, RequestCallback answered,
                             const RequestOptions& options) {
    const std::string request_id = contracts::Guid::New().ToString();
    std::weak_ptr<bool> alive = alive_;
    if (stopping_) {
        // Answered from the loop, never from inside the caller's own call.
        loop_.Post([alive, request_id, answered = std::move(answered)] {
            if (alive.expired()) return;
            answered({.kind = RequestOutcome::Kind::kCanceled,
                      .request_id = request_id,
                      .error = "the bus is stopping: the request was not sent"});
        });
        return request_id;
    }
    if (!response_endpoint_) {
        // It reads raw JSON too: a consumer on a raw JSON endpoint answers in raw JSON.
        response_endpoint_.reset(new ReceiveEndpoint(ReceiveEndpointSettings{.queue = ExchangeOfAddress(bus_address_),
                                                                             .prefetch = kResponsePrefetch,
                                                                             .raw_json = true,
                                                                             .temporary = true}));
        response_endpoint_->answers_requests_ = true;
        StartResponseEndpoint();
    }

    PendingRequest pending;
    contracts::OrderedJson accept = contracts::OrderedJson::array();
    for (const auto& response : responses) {
        AcceptAnswers(response, /*fault=*/false);
        accept.push_back(response.Urn());
        pending.answer_types.push_back(response.Urn());
    }
    const contracts::MessageTypeName fault = contracts::FaultOf(type);
    AcceptAnswers(fault, /*fault=*/true);
    pending.answer_types.push_back(fault.Urn());

    SendOptions send;
    send.request_id = request_id;
    send.response_address = bus_address_;
    send.time_to_live = options.timeout;
    send.trace = options.trace;
    // In the envelope only: MassTransit does not copy a list into the AMQP headers.
    send.headers["MT-Request-AcceptType"] = std::move(accept);
    std::string exchange = queue;
    if (queue.empty()) {
        DeclareTopologyFor(type, implemented);
        exchange = type.EntityName();
    } else {
        DeclareSendExchangeOnce(Address(queue));
    }
    OutgoingMessage outgoing = Build(exchange, std::move(message_types), std::move(message), {}, nullptr, send);

    pending.answered = std::move(answered);
    pending.timeout = std::make_unique<Timer>(loop_);
    pending.timeout->Start(options.timeout, [this, request_id, timeout = options.timeout] {
        FinishRequest(request_id, {.kind = RequestOutcome::Kind::kTimeout,
                                   .error = "no answer within " + std::to_string(timeout.count()) + " ms"});
    });
    pending_requests_.emplace(request_id, std::move(pending));
    Dispatch(std::move(outgoing), [this, alive, request_id](const Status& status) {
        if (alive.expired() || status.ok()) return;
        FinishRequest(request_id, {.kind = RequestOutcome::Kind::kNotSent, .error = status.message()});
    });
    return request_id;
}

void Bus::StartResponseEndpoint() {
    const std::string& queue = response_endpoint_->settings_.queue;
    // Declared on every start: the broker deletes the queue once its consumer is cancelled.
    transport_.Declare(QueueWithExchange(queue, {{"x-expires", kResponseQueueExpiresMs}}, /*temporary=*/true),
                       LogRefusal("the bus endpoint " + queue));
    if (!response_endpoint_->consuming_) StartConsuming(*response_endpoint_);
}

void Bus::AcceptAnswers(const contracts::MessageTypeName& type, bool fault) {
    std::string urn = type.Urn();
    for (const auto& registration : response_endpoint_->registrations_)
        if (registration.urn == urn) return;
    ReceiveEndpoint::Registration registration;
    registration.type = type;
    registration.urn = urn;
    registration.consumer_type = "messaging.RequestClient";
    registration.invoke = [this, fault, urn](ConsumeContext& context) {
        const Envelope& answer = context.envelope();
        RequestOutcome outcome{.kind = fault ? RequestOutcome::Kind::kFault : RequestOutcome::Kind::kResponse,
                               .answer = answer};
        if (fault)
            outcome.error = FaultMessage(answer.message);
        else
            outcome.response_type = urn;
        FinishRequest(answer.request_id, std::move(outcome));
    };
    response_endpoint_->registrations_.push_back(std::move(registration));
}

const ReceiveEndpoint::Registration* Bus::MatchAnswer(const Envelope& envelope) const {
    const auto pending = pending_requests_.find(envelope.request_id);
    if (pending == pending_requests_.end()) return nullptr;
    for (const auto& urn : envelope.message_type)
        for (const auto& accepted : pending->second.answer_types)
            if (contracts::EqualsIgnoreCase(urn, accepted)) return response_endpoint_->Match({accepted});
    return nullptr;
}

void Bus::FinishRequest(const std::string& request_id, RequestOutcome outcome) {
    auto finished = pending_requests_.extract(request_id);
    if (finished.empty()) return;  // answered already
    finished.mapped().timeout->Stop();
    outcome.request_id = request_id;
    // The requester's callback may fail; the answer is taken all the same, and nothing is thrown
    // into the loop or the consume pipeline.
    try {
        finished.mapped().answered(std::move(outcome));
    } catch (const std::exception& e) {
        spdlog::error("the callback of request {} failed: {}", request_id, e.what());
    } catch (...) {
        spdlog::error("the callback of request {} failed", request_id);
    }
}

void Bus::OnDelivery(ReceiveEndpoint& endpoint, Delivery delivery) {
    // Sent before the consumer was cancelled (stop, kill switch): back to the queue untouched.
    if (!endpoint.consuming_) return transport_.Nack(delivery, /*requeue=*/true);
    const int limit = endpoint.settings_.concurrent_message_limit;
    if (limit > 0 && endpoint.active_ >= limit) {
        endpoint.waiting_.push_back(std::move(delivery));
        return;
    }
    Begin(endpoint, std::move(delivery));
}

void Bus::Begin(ReceiveEndpoint& endpoint, Delivery delivery) {
    ++endpoint.active_;
    auto in_flight = std::make_shared<InFlight>();
    in_flight->endpoint = &endpoint;
    in_flight->delivery = std::move(delivery);
    in_flight_.push_back(in_flight);
    in_flight->position = std::prev(in_flight_.end());

    static const contracts::Json kNoHeaders = contracts::Json::object();
    LogScope log_scope(in_flight->log_fields);
    try {
        const MessageProperties& properties = in_flight->delivery.message.properties;
        in_flight->raw_json = endpoint.settings_.raw_json && IsRawJsonContentType(ContentTypeOf(properties));
        in_flight->envelope = in_flight->raw_json ? ReadRawJson(in_flight->delivery.message.body, properties)
                                                  : ParseEnvelope(in_flight->delivery.message.body);
    } catch (const std::exception& e) {
        in_flight->trace = ReceiveSpan(in_flight->delivery.message.properties.headers, kNoHeaders);
        in_flight->log_fields.Set(kTraceLogField, in_flight->trace.trace_id);
        spdlog::warn("{}: message {} cannot be read ({}); moving it to {}", endpoint.settings_.queue,
                     in_flight->delivery.message.properties.message_id, e.what(),
                     ErrorQueueName(endpoint.settings_.queue));
        const std::string type = CurrentExceptionTypeName();
        MoveToError(in_flight, type, e.what(), {BuildReceiveFault(in_flight, type, e.what())});
        return;
    }
    in_flight->trace = ReceiveSpan(in_flight->delivery.message.properties.headers, in_flight->envelope.headers);
    in_flight->log_fields.Set(kTraceLogField, in_flight->trace.trace_id);
    in_flight->registration = endpoint.answers_requests_ ? MatchAnswer(in_flight->envelope)
                                                         : endpoint.Match(in_flight->envelope.message_type);
    // A raw message that names no type is for the endpoint's consumer, as MassTransit's raw
    // deserializer lets any type read it; with several consumers, which one is meant is unknown.
    if (!in_flight->registration && in_flight->raw_json && in_flight->envelope.message_type.empty() &&
        endpoint.registrations_.size() == 1)
        in_flight->registration = &endpoint.registrations_.front();
    if (!in_flight->registration) {
        MoveToSkipped(in_flight);
        return;
    }
    ConsumeMatched(in_flight);
}

void Bus::ConsumeMatched(const std::shared_ptr<InFlight>& in_flight) {
    ReceiveEndpoint& endpoint = *in_flight->endpoint;
    if (endpoint.kill_switch_) endpoint.kill_switch_->OnAttempt(KillSwitch::Clock::now());
    if (endpoint.settings_.redelivery_limit > 0 && CountRedelivery(in_flight)) return;
    RunAttempt(in_flight);
}

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

void Bus::RunAttempt(const std::shared_ptr<InFlight>& in_flight) {
    in_flight->retry_timer.reset();
    const auto& registration = *in_flight->registration;
    const std::string& queue = in_flight->endpoint->settings_.queue;
    LogScope log_scope(in_flight->log_fields);
    ConsumeContext context(*this, in_flight->envelope, in_flight->delivery.message.properties, queue,
                           in_flight->attempt, in_flight->delivery.redelivered, in_flight->trace, in_flight->log_fields,
                           in_flight->endpoint->settings_.raw_json);
    std::string error_type;
    std::string error_message;
    bool retryable = true;
    std::optional<std::string> store_busy;
    try {
        // Noted while the consumer runs: if it ends the process, the next one blames this message.
        JournalNote note(in_flight->endpoint->settings_.redelivery_limit > 0 ? journal_.get() : nullptr, *in_flight);
        // An answer to a request only ends the request: it writes nothing to commit.
        if (unit_of_work_ && !in_flight->endpoint->answers_requests_)
            unit_of_work_->Run([&] { registration.invoke(context); });
        else
            registration.invoke(context);
    } catch (const StoreBusy& e) {
        store_busy = e.what();
    } catch (const contracts::ContractError& e) {
        error_type = CurrentExceptionTypeName();
        error_message = e.what();
        retryable = false;
    } catch (const NonRetryableError& e) {
        error_type = CurrentExceptionTypeName();
        error_message = e.what();
        retryable = false;
    } catch (const std::exception& e) {
        error_type = CurrentExceptionTypeName();
        error_message = e.what();
    } catch (...) {
        error_type = CurrentExceptionTypeName();
        error_message = "an exception that is not a std::exception";
    }

    if (store_busy) return WaitForStore(in_flight, *store_busy);
    if (!error_type.empty()) {
        const auto delay = retryable && !stopping_
                               ? in_flight->endpoint->settings_.retry.DelayBeforeRetry(in_flight->attempt + 1)
                               : std::nullopt;
        if (delay) {
            spdlog::debug("{}: {} attempt {} failed ({}); retrying in {} ms", queue, registration.consumer_type,
                          in_flight->attempt + 1, error_message, delay->count());
            ++in_flight->attempt;
            return Later(in_flight, *delay, &Bus::RunAttempt);
        }
        GiveUp(in_flight, error_type, error_message);
        return;
    }

    if (observer_) observer_->OnConsumed(queue, in_flight->envelope, registration.urn);
    if (auto& kill_switch = in_flight->endpoint->kill_switch_) kill_switch->OnSuccess(KillSwitch::Clock::now());
    if (!unit_of_work_ || in_flight->endpoint->answers_requests_) {
        Release(in_flight, std::move(context.outgoing_));
        return;
    }
    std::weak_ptr<bool> alive = alive_;
    unit_of_work_->AfterCommit(
        [this, alive, in_flight, outgoing = std::move(context.outgoing_)](const Status& status) mutable {
            if (alive.expired()) return;
            if (!status.ok()) return ReturnToQueue(in_flight, "the writes of", status);
            Release(in_flight, std::move(outgoing));
        });
}

void Bus::WaitForStore(const std::shared_ptr<InFlight>& in_flight, const std::string& reason) {
    // Another writer holds the store: the message is not at fault, so it is neither counted as an
    // attempt nor faulted. It runs again a little later (10 ms, doubling up to a second), for as long
    // as the store stays busy; a stopping bus returns it to its queue instead.
    if (stopping_) return Settle(in_flight, /*ack=*/false);
    const auto delay = StoreBusy::RetryDelay(in_flight->busy_waits);
    if (in_flight->busy_waits++ == 0)
        spdlog::warn("{}: {} waits for the database ({}); running it again in {} ms",
                     in_flight->endpoint->settings_.queue, in_flight->envelope.message_id, reason, delay.count());
    Later(in_flight, delay, &Bus::RunAttempt);
}

void Bus::Release(const std::shared_ptr<InFlight>& in_flight, std::vector<OutgoingMessage> outgoing) {
    std::weak_ptr<bool> alive = alive_;
    Dispatch(std::move(outgoing), [this, alive, in_flight](const Status& status) {
        if (alive.expired()) return;
        // A destination refused for good (an answer address this user may not declare) would refuse
        // the message again on every redelivery: the message faults instead, as MassTransit's
        // failed send does.
        if (status.code() == StatusCode::kPermissionDenied)
            return GiveUp(in_flight, "messaging.PermissionDenied", status.message());
        if (!status.ok()) return ReturnToQueue(in_flight, "the messages published for", status);
        Settle(in_flight, /*ack=*/true);
    });
}

void Bus::ReturnToQueue(const std::shared_ptr<InFlight>& in_flight, const char* what, const Status& status) {
    LogScope log_scope(in_flight->log_fields);
    spdlog::warn("{}: {} {} did not go through ({}); returning it to the queue", in_flight->endpoint->settings_.queue,
                 what, in_flight->envelope.message_id, status.message());
    Settle(in_flight, /*ack=*/false);
}

void Bus::GiveUp(const std::shared_ptr<InFlight>& in_flight, const std::string& exception_type,
                 const std::string& exception_message) {
    LogScope log_scope(in_flight->log_fields);
    const auto& registration = *in_flight->registration;
    const Envelope& consumed = in_flight->envelope;
    const std::string& queue = in_flight->endpoint->settings_.queue;
    spdlog::warn("{}: {} gave up on {} {} after {} attempt(s): {}", queue, registration.consumer_type,
                 registration.type.name, consumed.message_id, in_flight->attempt + 1, exception_message);
    if (observer_) observer_->OnFaulted(queue, consumed, registration.urn, exception_message);
    ReceiveEndpoint& endpoint = *in_flight->endpoint;
    if (endpoint.kill_switch_ && endpoint.kill_switch_->OnFault(KillSwitch::Clock::now())) TripKillSwitch(endpoint);

    contracts::ExceptionInfo info;
    info.exception_type = exception_type;
    info.message = exception_message;
    info.stack_trace = ConsumeStackTrace(registration);
    info.source = settings_.service_name;
    // The consumed message with its fields in the order they were written: a raw body is the message.
    const std::string& body = in_flight->delivery.message.body;
    contracts::OrderedJson as_written = in_flight->raw_json ? contracts::OrderedJson::parse(body, nullptr, false)
                                                            : MessageAsWritten(body, consumed.message);
    if (as_written.is_discarded()) as_written = MessageAsWritten(body, consumed.message);
    contracts::OrderedJson fault =
        WriteFaultBody(consumed.message_id, info, host_, consumed.message_type, std::move(as_written));

    SendOptions options;
    // The retries made, as MassTransit counts them: Interval(3, ...) gives 3 after four attempts.
    const int retry_count = in_flight->attempt;
    if (retry_count > 0) options.headers["MT-Fault-RetryCount"] = retry_count;
    // The request's id, as MassTransit's fault carries it: a request client matches the fault by it.
    options.request_id = consumed.request_id;

    // To faultAddress, else responseAddress, else published, as MassTransit's GetFaultEndpoint; a
    // direct reply-to address without the request's reply_to has no one to answer, so it is published.
    const auto fault_type = contracts::FaultOf(registration.type);
    const std::string& address = !consumed.fault_address.empty() ? consumed.fault_address : consumed.response_address;
    const auto& properties = in_flight->delivery.message.properties;
    ConsumeContext parent(*this, consumed, properties, queue, in_flight->attempt, in_flight->delivery.redelivered,
                          in_flight->trace, in_flight->log_fields, in_flight->endpoint->settings_.raw_json);
    std::vector<std::string> fault_types = {fault_type.Urn(), contracts::kFaultUrn};
    OutgoingMessage fault_message;
    if (!address.empty() && !(IsReplyToAddress(address) && properties.reply_to.empty())) {
        fault_message =
            BuildAnswer(address, std::move(fault_types), std::move(fault), consumed.correlation_id, parent, options);
    } else {
        DeclareTopologyFor(fault_type, {{"MassTransit", "Fault", {}}});
        fault_message = Build(fault_type.EntityName(), std::move(fault_types), std::move(fault),
                              consumed.correlation_id, &parent, options);
    }
    MoveToError(in_flight, exception_type, exception_message, {std::move(fault_message)});
}

OutgoingMessage Bus::BuildAnswer(const std::string& address, std::vector<std::string> message_types,
                                 contracts::OrderedJson message, std::string correlation_id,
                                 const ConsumeContext& parent, const SendOptions& options) {
    if (!IsReplyToAddress(address)) {
        DeclareSendExchangeOnce(address);
        return Build(ExchangeOfAddress(address), std::move(message_types), std::move(message),
                     std::move(correlation_id), &parent, options);
    }
    const std::string& reply_to = parent.properties_.reply_to;
    if (reply_to.empty())
        throw NonRetryableError("the response address is " + address +
                                " (direct reply-to) but the request carries no reply_to property to answer to");
    OutgoingMessage answer =
        Build(kReplyToQueue, std::move(message_types), std::move(message), std::move(correlation_id), &parent, options);
    answer.exchange.clear();
    answer.message.routing_key = reply_to;
    return answer;
}

OutgoingMessage Bus::BuildReceiveFault(const std::shared_ptr<InFlight>& in_flight, const std::string& exception_type,
                                       const std::string& exception_message) {
    const auto& properties = in_flight->delivery.message.properties;
    const std::string& queue = in_flight->endpoint->settings_.queue;
    const contracts::MessageTypeName receive_fault{"MassTransit", "ReceiveFault", {}};
    // If the exchange cannot be declared, publishing to it fails, and MoveToError then returns the
    // message to its queue.
    DeclareTopologyFor(receive_fault, {{"MassTransit", "Fault", {}}});
    contracts::ExceptionInfo cause;
    cause.exception_type = exception_type;
    cause.message = exception_message;
    cause.stack_trace = "   at messaging.ParseEnvelope()";
    cause.source = settings_.service_name;
    contracts::ExceptionInfo info;
    info.exception_type = "System.Runtime.Serialization.SerializationException";
    info.message = "The message envelope could not be read";
    info.stack_trace = "   at messaging.Bus.OnDelivery()";
    info.source = settings_.service_name;
    info.inner_exception = std::make_shared<const contracts::ExceptionInfo>(std::move(cause));
    contracts::OrderedJson fault = WriteReceiveFaultBody(
        properties.message_id, info, host_,
        properties.content_type.empty() ? std::string(kEnvelopeContentType) : properties.content_type);
    SendOptions options;
    options.trace = in_flight->trace;
    // Published with the endpoint's serializer, as MassTransit's receive endpoint does.
    options.raw_json = in_flight->endpoint->settings_.raw_json;
    return Build(receive_fault.EntityName(), {receive_fault.Urn(), contracts::kFaultUrn}, std::move(fault), {}, nullptr,
                 options, queue);
}

void Bus::MoveToError(const std::shared_ptr<InFlight>& in_flight, const std::string& exception_type,
                      const std::string& exception_message, std::vector<OutgoingMessage> also_publish) {
    const std::string& queue = in_flight->endpoint->settings_.queue;
    TransportMessage copy = in_flight->delivery.message;
    copy.properties.expiration.clear();
    ErrorCopyFacts facts{.exception_type = exception_type,
                         .exception_message = exception_message,
                         .input_address = InputAddress(queue),
                         .stack_trace = "   at MassTransit.Serialization.DeserializeEnvelope()"};
    if (const auto* registration = in_flight->registration) {
        facts.stack_trace = ConsumeStackTrace(*registration);
        facts.consumer_type = registration->consumer_type;
        facts.message_type = registration->type.DotNetName();
        facts.retry_count = in_flight->attempt;
    }
    StampErrorHeaders(copy.properties.headers, facts, host_);

    Move(in_flight, ErrorQueueName(queue), std::move(copy), std::move(also_publish));
}

void Bus::MoveToSkipped(const std::shared_ptr<InFlight>& in_flight) {
    const std::string& queue = in_flight->endpoint->settings_.queue;
    spdlog::warn("{}: no consumer for {} ({}); moving it to {}", queue, in_flight->envelope.message_id,
                 in_flight->envelope.message_type.empty() ? "" : in_flight->envelope.message_type.front(),
                 SkippedQueueName(queue));
    TransportMessage copy = in_flight->delivery.message;
    copy.properties.expiration.clear();
    StampSkippedHeaders(copy.properties.headers, host_);
    Move(in_flight, SkippedQueueName(queue), std::move(copy), {});
}

void Bus::Move(const std::shared_ptr<InFlight>& in_flight, const std::string& destination, TransportMessage copy,
               std::vector<OutgoingMessage> also_publish) {
    const HeaderTable& arguments = in_flight->endpoint->settings_.queue_arguments;
    const bool temporary = in_flight->endpoint->settings_.temporary;
    if (auto refused = refused_queues_.find(destination);
        refused != refused_queues_.end() && std::chrono::steady_clock::now() >= refused->second.retry_at) {
        // Time to ask the broker again (an operator may have fixed the queue): declared anew.
        std::erase(declared_queues_, destination);
        refused->second.retry_at = std::chrono::steady_clock::now() + refused->second.delay;
        refused->second.asked_again = true;
    }
    DeclareQueueOnce(destination, arguments, temporary);
    if (observer_) observer_->OnMoved(destination, copy);
    // The delivery is acked only once the broker confirmed the copy in a queue and every other
    // message; anything less returns it to its queue, so a move can repeat but never lose it.
    struct Outcome {
        int remaining = 2;
        Status first_error;
    };
    auto outcome = std::make_shared<Outcome>();
    std::weak_ptr<bool> alive = alive_;
    auto finish = [this, alive, in_flight, destination, outcome](const Status& status) {
        if (!status.ok() && outcome->first_error.ok()) outcome->first_error = status;
        if (--outcome->remaining > 0 || alive.expired()) return;
        LogScope log_scope(in_flight->log_fields);
        if (outcome->first_error.code() == StatusCode::kPreconditionFailed)
            return HoldRefusedMove(in_flight, destination, outcome->first_error);
        if (outcome->first_error.ok()) refused_queues_.erase(destination);
        if (!outcome->first_error.ok())
            spdlog::error("{}: moving {} to {} failed ({}); returning it to the queue",
                          in_flight->endpoint->settings_.queue, in_flight->delivery.message.properties.message_id,
                          destination, outcome->first_error.message());
        Settle(in_flight, outcome->first_error.ok());
    };
    // A fault the broker refuses for good (its address may not be declared) must not keep the
    // message out of _error, where its copy records the failure: logged, and the move goes on.
    Dispatch(std::move(also_publish), [finish, in_flight](const Status& status) {
        if (status.code() != StatusCode::kPermissionDenied) return finish(status);
        LogScope log_scope(in_flight->log_fields);
        spdlog::warn("{}: the fault of {} was not sent: {}", in_flight->endpoint->settings_.queue,
                     in_flight->envelope.message_id, status.message());
        finish(Status::Ok());
    });
    copy.mandatory = true;
    PublishMovedCopy(destination, arguments, temporary, std::move(copy), kMovePublishAttempts, finish);
}

void Bus::HoldRefusedMove(const std::shared_ptr<InFlight>& in_flight, const std::string& destination,
                          const Status& refusal) {
    using namespace std::chrono_literals;
    constexpr std::chrono::milliseconds kFirstRetry = 5s, kLongestRetry = 5min, kHold = 1s;
    const auto now = std::chrono::steady_clock::now();
    auto [refused, first] = refused_queues_.try_emplace(destination, RefusedQueue{now + kFirstRetry, kFirstRetry});
    const bool refused_again = !first && refused->second.asked_again;
    if (refused_again) {
        // Refused again after a new try: wait longer before the next one.
        refused->second.asked_again = false;
        refused->second.delay = std::min<std::chrono::milliseconds>(refused->second.delay * 2, kLongestRetry);
        refused->second.retry_at = now + refused->second.delay;
    }
    // Said once per answer of the broker; each hold of each message after that only at debug level.
    spdlog::log(first || refused_again ? spdlog::level::warn : spdlog::level::debug,
                "{}: {} cannot be moved to {} ({}); it stays in its queue, and {} is declared again in {} s",
                in_flight->endpoint->settings_.queue, in_flight->delivery.message.properties.message_id, destination,
                refusal.message(), destination,
                std::chrono::duration_cast<std::chrono::seconds>(refused->second.retry_at - now).count());
    // Returned after a short hold, so that a message which cannot move does not come straight back.
    Later(in_flight, kHold, &Bus::ReturnAfterHold);
}

void Bus::ReturnAfterHold(const std::shared_ptr<InFlight>& in_flight) {
    Settle(in_flight, /*ack=*/false);
}

void Bus::Later(const std::shared_ptr<InFlight>& in_flight, std::chrono::milliseconds delay,
                void (Bus::*step)(const std::shared_ptr<InFlight>&)) {
    in_flight->retry_timer = std::make_unique<Timer>(loop_);
    std::weak_ptr<InFlight> weak = in_flight;
    in_flight->retry_timer->Start(delay, [this, weak, step] {
        if (auto target = weak.lock()) loop_.Post([this, target, step] { (this->*step)(target); });
    });
}

void Bus::PublishMovedCopy(const std::string& queue, const HeaderTable& arguments, bool temporary,
                           TransportMessage copy, int attempts_left, Completion done) {
    TransportMessage again = attempts_left > 1 ? copy : TransportMessage{};
    std::weak_ptr<bool> alive = alive_;
    transport_.Publish(queue, std::move(copy),
                       [this, alive, queue, arguments, temporary, again = std::move(again), attempts_left,
                        done = std::move(done)](const Status& status) mutable {
                           if (alive.expired()) return;
                           if (status.code() != StatusCode::kNotFound || attempts_left <= 1) return done(status);
                           // The queue is gone (deleted at runtime) though its exchange may remain:
                           // declare it again, as MassTransit does after a failed move, and publish
                           // behind that declaration.
                           spdlog::warn("{} did not take message {} ({}); declaring it again", queue,
                                        again.properties.message_id, status.message());
                           std::erase(declared_queues_, queue);
                           DeclareQueueOnce(queue, arguments, temporary);
                           PublishMovedCopy(queue, arguments, temporary, std::move(again), attempts_left - 1,
                                            std::move(done));
                       });
}

void Bus::Settle(const std::shared_ptr<InFlight>& in_flight, bool ack) {
    if (in_flight->settled) return;
    in_flight->settled = true;
    if (ack)
        transport_.Ack(in_flight->delivery);
    else
        transport_.Nack(in_flight->delivery, /*requeue=*/true);
    in_flight_.erase(in_flight->position);
    ReceiveEndpoint& endpoint = *in_flight->endpoint;
    --endpoint.active_;
    if (!endpoint.waiting_.empty()) {
        // Started from the loop, not from here: a settle can come from inside an attempt.
        std::weak_ptr<bool> alive = alive_;
        loop_.Post([this, alive, target = &endpoint] {
            if (!alive.expired()) BeginWaiting(*target);
        });
    }
    if (stopping_ && in_flight_.empty() && on_stopped_) {
        auto stopped = std::move(on_stopped_);
        on_stopped_ = nullptr;
        stopped();
    }
}

}  // namespace messaging
