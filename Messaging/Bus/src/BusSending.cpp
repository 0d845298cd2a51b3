// Sending: building an outgoing message (envelope or raw JSON, with its headers), an answer, and
// dispatching messages to the transport.
#include "Bus/Bus.h"

#include <cstdint>

#include "Wire/RawJson.h"

namespace messaging {

namespace {

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
    if (!envelope.message_type.empty()) outgoing.message_type = envelope.message_type.front();
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
        const BusMetrics::SendSeries* send_series = nullptr;
        if (metrics_) {
            send_series = &metrics_->SendSeriesOf(outgoing.exchange, outgoing.message_type);
            metrics_->Sent(*send_series);
        }
        transport_.Publish(
            outgoing.exchange, std::move(outgoing.message), [this, pending, alive, send_series](const Status& status) {
                // The first error, but one refused for good gives way to one that may
                // pass on a retry.
                if (!status.ok() &&
                    (pending->first_error.ok() || pending->first_error.code() == StatusCode::kPermissionDenied))
                    pending->first_error = status;
                if (!status.ok() && send_series && !alive.expired())
                    metrics_->SendFailed(*send_series, StatusCodeName(status.code()));
                if (--pending->remaining == 0 && !alive.expired()) pending->done(pending->first_error);
            });
    }
}

}  // namespace messaging
