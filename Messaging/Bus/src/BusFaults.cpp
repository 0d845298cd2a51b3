// Faults: giving up on a message, its Fault<T> and ReceiveFault, and moving it to `_error` or
// `_skipped` (held back while the broker refuses that queue).
#include "Bus/Bus.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "BusInternals.h"

namespace messaging {

namespace {

// The stack trace a fault names for a consumer, as .NET would print its Consume frame.
std::string ConsumeStackTrace(const auto& registration) {
    return "   at " + registration.consumer_type + ".Consume(" + registration.type.DotNetName() + ")";
}

}  // namespace

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
        if (outcome->first_error.ok()) {
            refused_queues_.erase(destination);
            if (metrics_) metrics_->Moved(in_flight->endpoint->settings_.queue, destination);
        }
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

}  // namespace messaging
