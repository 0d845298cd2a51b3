// Receiving: a delivery from its arrival through its consumer's attempts to its ack or nack.
#include "Bus/Bus.h"

#include <cxxabi.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "BusInternals.h"
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

}  // namespace

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
    in_flight->received_at = std::chrono::steady_clock::now();
    if (metrics_) {
        if (!endpoint.receive_series_) endpoint.receive_series_ = &metrics_->ReceiveSeriesOf(endpoint.settings_.queue);
        metrics_->ReceiveStarted(*endpoint.receive_series_);
    }

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
        if (const auto& id = in_flight->delivery.message.properties.message_id; !id.empty())
            in_flight->log_fields.Set(kMessageLogField, id);
        spdlog::warn("{}: message {} cannot be read ({}); moving it to {}", endpoint.settings_.queue,
                     in_flight->delivery.message.properties.message_id, e.what(),
                     ErrorQueueName(endpoint.settings_.queue));
        const std::string type = CurrentExceptionTypeName();
        in_flight->receive_error = TypeNameWithoutNamespace(type);
        MoveToError(in_flight, type, e.what(), {BuildReceiveFault(in_flight, type, e.what())});
        return;
    }
    in_flight->trace = ReceiveSpan(in_flight->delivery.message.properties.headers, in_flight->envelope.headers);
    in_flight->log_fields.Set(kTraceLogField, in_flight->trace.trace_id);
    if (const auto& id = in_flight->envelope.message_id; !id.empty()) in_flight->log_fields.Set(kMessageLogField, id);
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
    const auto attempt_started = std::chrono::steady_clock::now();
    if (metrics_) {
        if (!registration.consume_series)
            registration.consume_series =
                &metrics_->ConsumeSeriesOf({.kind = registration.kind,
                                            .queue = queue,
                                            .message_type = registration.message_type_label,
                                            .consumer_type = registration.consumer_type_label});
        std::optional<std::chrono::milliseconds> since_sent;
        if (in_flight->envelope.sent_time.time_since_epoch().count() != 0)
            since_sent = std::chrono::duration_cast<std::chrono::milliseconds>(contracts::UtcNow() -
                                                                               in_flight->envelope.sent_time);
        metrics_->ConsumeStarted(*registration.consume_series, in_flight->attempt, since_sent);
    }
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

    if (metrics_) {
        // A saga's duration runs from the delivery's receipt, a consumer's from its attempt's start,
        // as MassTransit measures them.
        const auto now = std::chrono::steady_clock::now();
        metrics_->ConsumeEnded(
            *registration.consume_series,
            now - (registration.kind == ConsumerKind::kSaga ? in_flight->received_at : attempt_started),
            error_type.empty() ? std::string() : TypeNameWithoutNamespace(error_type));
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

void Bus::Later(const std::shared_ptr<InFlight>& in_flight, std::chrono::milliseconds delay,
                void (Bus::*step)(const std::shared_ptr<InFlight>&)) {
    in_flight->retry_timer = std::make_unique<Timer>(loop_);
    std::weak_ptr<InFlight> weak = in_flight;
    in_flight->retry_timer->Start(delay, [this, weak, step] {
        if (auto target = weak.lock()) loop_.Post([this, target, step] { (this->*step)(target); });
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
    if (metrics_)
        metrics_->Received(*endpoint.receive_series_, std::chrono::steady_clock::now() - in_flight->received_at,
                           in_flight->receive_error);
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
