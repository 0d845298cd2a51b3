// Requests: the request client's sends, the bus endpoint that receives their answers, and matching
// an answer or fault to its request.
#include "Bus/Bus.h"

#include <spdlog/spdlog.h>

#include <cstdint>

#include "BusInternals.h"

namespace messaging {

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

}  // namespace messaging
