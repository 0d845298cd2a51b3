// Publishing: encoding a publish, its confirm, and a mandatory message the broker returned.
#include "RabbitMq/RabbitMqTransport.h"

#include <spdlog/spdlog.h>

#include "RabbitMq/FieldTable.h"
#include "RabbitMqChannels.h"

namespace messaging {

void RabbitMqTransport::Publish(const std::string& exchange, TransportMessage message, Completion confirmed) {
    auto fail = [&](Status status) {
        if (confirmed)
            loop_.Post([alive = std::weak_ptr<bool>(alive_), confirmed = std::move(confirmed), status] {
                if (!alive.expired()) confirmed(status);
            });
    };
    if (!IsConnected()) return fail(Status::Unavailable("not connected to RabbitMQ"));
    if (!refused_exchanges_.empty())
        if (auto refused = refused_exchanges_.find(exchange); refused != refused_exchanges_.end())
            return fail(Status::PermissionDenied("the broker does not let this service declare the exchange '" +
                                                 exchange + "' (" + refused->second + ")"));
    if (auto refused = on_demand_refusals_.Find(exchange))
        return fail(Status::PreconditionFailed("the broker refused the queue '" + exchange + "' (" + *refused + ")"));
    EncodedProperties properties(message.properties);
    const std::size_t mark = writer_.buffer().size();
    amqp_basic_publish_t publish{};
    publish.exchange = AmqpBytes(exchange);
    publish.routing_key = AmqpBytes(message.routing_key);
    publish.mandatory = message.mandatory ? 1 : 0;
    if (!writer_.AppendMethod(kPublishChannel, AMQP_BASIC_PUBLISH_METHOD, &publish) ||
        !writer_.AppendContent(kPublishChannel, properties.get(), message.body)) {
        writer_.buffer().resize(mark);
        return fail(Status::InvalidArgument("the message properties are too large for one frame"));
    }
    const std::uint64_t tag = next_publish_tag_++;
    if (message.mandatory)
        returnable_.emplace(tag, ReturnablePublish{message.properties.message_id, exchange, message.routing_key, {}});
    pending_confirms_.emplace(tag, confirmed ? std::move(confirmed) : Completion([](const Status&) {}));
    if (writer_.buffer().size() >= kFlushThreshold)
        Flush();
    else
        flush_at_turn_end_.Request();
}

void RabbitMqTransport::Confirm(std::uint64_t tag, bool multiple, bool ok) {
    std::vector<std::pair<std::uint64_t, Completion>> done;
    if (multiple) {
        auto end = pending_confirms_.upper_bound(tag);
        for (auto it = pending_confirms_.begin(); it != end; ++it) done.emplace_back(it->first, std::move(it->second));
        pending_confirms_.erase(pending_confirms_.begin(), end);
    } else if (auto it = pending_confirms_.find(tag); it != pending_confirms_.end()) {
        done.emplace_back(it->first, std::move(it->second));
        pending_confirms_.erase(it);
    }
    const Status status = ok ? Status::Ok() : Status::Internal("the broker rejected the message (basic.nack)");
    for (auto& [confirmed_tag, completion] : done) {
        auto returnable = returnable_.find(confirmed_tag);
        if (returnable == returnable_.end()) {
            completion(status);
            continue;
        }
        const std::string returned = std::move(returnable->second.returned);
        const std::string exchange = std::move(returnable->second.exchange);
        returnable_.erase(returnable);
        // A returned message is confirmed too (the broker is done with it), yet it reached no queue.
        if (ok && !returned.empty())
            completion(Status::NotFound("the broker returned the message published to '" + exchange +
                                        "', which reached no queue: " + returned));
        else
            completion(status);
    }
}

void RabbitMqTransport::OnReturned(const IncomingContent& content) {
    // The broker sends basic.return before the basic.ack of the same publish, so the publish is still
    // pending. Returns carry no publish tag: match the oldest unmatched one with the same message id,
    // exchange and routing key (a message published twice at once would be returned twice alike).
    const auto& message = content.delivery.message;
    for (auto& [tag, publish] : returnable_) {
        if (!publish.returned.empty() || publish.message_id != message.properties.message_id ||
            publish.exchange != content.delivery.exchange || publish.routing_key != message.routing_key)
            continue;
        publish.returned = content.return_reason;
        spdlog::warn("RabbitMQ returned message {} published to '{}': {}", message.properties.message_id,
                     content.delivery.exchange, content.return_reason);
        return;
    }
    spdlog::warn("RabbitMQ returned message {} published to '{}' ({}), which no pending publish matches",
                 message.properties.message_id, content.delivery.exchange, content.return_reason);
}

}  // namespace messaging
