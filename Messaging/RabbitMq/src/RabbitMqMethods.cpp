// Methods in and out: dispatching what the broker sends, matching replies to their requests,
// writing frames and the acks buffered for them.
#include "RabbitMq/RabbitMqTransport.h"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "RabbitMq/AckPlan.h"
#include "RabbitMqChannels.h"

namespace messaging {

void RabbitMqTransport::OnMethod(std::uint16_t channel, amqp_method_number_t method, void* decoded) {
    if (phase_ == Phase::kClosing) {
        // Only the end of the connection matters now; deliveries still arriving are requeued by it.
        if (method == AMQP_CONNECTION_CLOSE_OK_METHOD || method == AMQP_CONNECTION_CLOSE_METHOD)
            ConnectionLost("closed");
        return;
    }
    switch (method) {
        case AMQP_BASIC_DELIVER_METHOD: {
            auto* deliver = static_cast<amqp_basic_deliver_t*>(decoded);
            IncomingContent& content = incoming_[channel];
            content = IncomingContent{};
            content.active = true;
            content.consumer_tag = AmqpString(deliver->consumer_tag);
            content.delivery.delivery_tag = deliver->delivery_tag;
            content.delivery.redelivered = deliver->redelivered != 0;
            content.delivery.exchange = AmqpString(deliver->exchange);
            content.delivery.message.routing_key = AmqpString(deliver->routing_key);
            content.delivery.connection_generation = generation_;
            unsettled_.insert(deliver->delivery_tag);
            return;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            auto* returned = static_cast<amqp_basic_return_t*>(decoded);
            IncomingContent& content = incoming_[channel];
            content = IncomingContent{};
            content.active = true;
            content.returned = true;
            content.return_reason = std::to_string(returned->reply_code) + " " + AmqpString(returned->reply_text);
            content.delivery.exchange = AmqpString(returned->exchange);
            content.delivery.message.routing_key = AmqpString(returned->routing_key);
            return;
        }
        case AMQP_BASIC_ACK_METHOD: {
            auto* ack = static_cast<amqp_basic_ack_t*>(decoded);
            Confirm(ack->delivery_tag, ack->multiple != 0, true);
            return;
        }
        case AMQP_BASIC_NACK_METHOD: {
            auto* nack = static_cast<amqp_basic_nack_t*>(decoded);
            Confirm(nack->delivery_tag, nack->multiple != 0, false);
            return;
        }
        case AMQP_BASIC_CANCEL_METHOD:
            ConnectionLost("the broker cancelled a consumer (was its queue deleted?)");
            return;
        case AMQP_CONNECTION_BLOCKED_METHOD: {
            auto* blocked = static_cast<amqp_connection_blocked_t*>(decoded);
            SetBlocked(AmqpString(blocked->reason));
            spdlog::warn("RabbitMQ blocks publishing ({}): publishes wait until the alarm clears", blocked_reason_);
            return;
        }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            spdlog::info("RabbitMQ unblocked publishing (the alarm '{}' cleared)", blocked_reason_);
            ClearBlocked();
            return;
        case AMQP_CHANNEL_CLOSE_METHOD:
            OnChannelClose(channel, *static_cast<amqp_channel_close_t*>(decoded));
            return;
        case AMQP_CONNECTION_CLOSE_METHOD:
            OnConnectionClose(*static_cast<amqp_connection_close_t*>(decoded));
            return;
        default:
            break;
    }
    auto& replies = pending_replies_[channel];
    if (replies.empty() || replies.front().reply != method) {
        ConnectionLost("unexpected method " + std::to_string(method) + " on channel " + std::to_string(channel));
        return;
    }
    PendingReply reply = std::move(replies.front());
    replies.pop_front();
    const std::uint64_t generation = generation_;
    if (reply.done) reply.done(decoded);
    if (reply.outcome) reply.outcome(Status::Ok());
    for (auto& work : reply.then)
        if (generation == generation_) work();
}

void RabbitMqTransport::Send(std::uint16_t channel, amqp_method_number_t method, void* arguments) {
    // Our methods are a few hundred bytes at most; frame_max is at least 4 KiB.
    if (!writer_.AppendMethod(channel, method, arguments))
        throw std::logic_error("cannot encode AMQP method " + std::to_string(method));
    flush_at_turn_end_.Request();
}

void RabbitMqTransport::SendRpc(std::uint16_t channel, amqp_method_number_t method, void* arguments,
                                amqp_method_number_t reply, std::string what, std::function<void(void*)> done) {
    Send(channel, method, arguments);
    pending_replies_[channel].push_back(PendingReply{reply, std::move(what), std::move(done), {}, {}, {}, {}, 0});
}

void RabbitMqTransport::AfterPublishChannelReplies(std::function<void()> work) {
    auto& replies = pending_replies_[kPublishChannel];
    if (replies.empty())
        work();
    else
        replies.back().then.push_back(std::move(work));
}

void RabbitMqTransport::Flush() {
    if (!stream_) return;
    if (phase_ == Phase::kOpen && !acks_.empty()) {
        const AckPlan plan = PlanAcks(unsettled_, std::move(acks_));
        acks_.clear();
        if (plan.multiple_up_to) {
            amqp_basic_ack_t ack{plan.multiple_up_to, 1};
            writer_.AppendMethod(kConsumeChannel, AMQP_BASIC_ACK_METHOD, &ack);
            unsettled_.erase(unsettled_.begin(), unsettled_.upper_bound(plan.multiple_up_to));
        }
        for (auto tag : plan.single) {
            amqp_basic_ack_t ack{tag, 0};
            writer_.AppendMethod(kConsumeChannel, AMQP_BASIC_ACK_METHOD, &ack);
            unsettled_.erase(tag);
        }
    }
    if (writer_.buffer().empty()) return;
    wrote_since_tick_ = true;
    stream_->Write(writer_.buffer());
    writer_.Clear();
}

}  // namespace messaging
