// Consumers: starting them, assembling their deliveries and settling them.
#include "RabbitMq/RabbitMqTransport.h"

#include "RabbitMq/FieldTable.h"
#include "RabbitMqChannels.h"

namespace messaging {

void RabbitMqTransport::StartConsumer(ConsumerId id) {
    // The queue is declared on the publish channel: consume once those declarations are answered.
    AfterPublishChannelReplies([this, id] {
        auto it = consumers_.find(id);
        if (it == consumers_.end() || phase_ != Phase::kOpen) return;
        amqp_basic_qos_t qos{};
        qos.prefetch_count = it->second.prefetch;
        SendRpc(kConsumeChannel, AMQP_BASIC_QOS_METHOD, &qos, AMQP_BASIC_QOS_OK_METHOD, "basic.qos");
        amqp_basic_consume_t consume{};
        consume.queue = AmqpBytes(it->second.queue);
        consume.consumer_tag = amqp_empty_bytes;
        consume.arguments = amqp_empty_table;
        SendRpc(kConsumeChannel, AMQP_BASIC_CONSUME_METHOD, &consume, AMQP_BASIC_CONSUME_OK_METHOD,
                "basic.consume " + it->second.queue, [this, id](void* decoded) {
                    const std::string tag = AmqpString(static_cast<amqp_basic_consume_ok_t*>(decoded)->consumer_tag);
                    if (auto consumer = consumers_.find(id); consumer != consumers_.end()) {
                        consumer->second.tag = tag;
                        return;
                    }
                    // Cancelled before the broker answered: stop it now.
                    amqp_basic_cancel_t cancel{};
                    cancel.consumer_tag = AmqpBytes(tag);
                    SendRpc(kConsumeChannel, AMQP_BASIC_CANCEL_METHOD, &cancel, AMQP_BASIC_CANCEL_OK_METHOD,
                            "basic.cancel");
                });
    });
}

ConsumerId RabbitMqTransport::Consume(const std::string& queue, std::uint16_t prefetch, DeliveryHandler handler) {
    const ConsumerId id = next_consumer_id_++;
    consumers_[id] = ConsumerEntry{queue, prefetch, std::move(handler), {}, {}};
    if (IsConnected()) StartConsumer(id);
    return id;
}

void RabbitMqTransport::Cancel(ConsumerId id) {
    auto it = consumers_.find(id);
    if (it == consumers_.end()) return;
    if (IsConnected() && !it->second.tag.empty()) {
        amqp_basic_cancel_t cancel{};
        cancel.consumer_tag = AmqpBytes(it->second.tag);
        SendRpc(kConsumeChannel, AMQP_BASIC_CANCEL_METHOD, &cancel, AMQP_BASIC_CANCEL_OK_METHOD, "basic.cancel");
    }
    consumers_.erase(it);
}

void RabbitMqTransport::OnContentHeader(std::uint16_t channel, std::string_view payload) {
    auto it = incoming_.find(channel);
    if (it == incoming_.end() || !it->second.active || it->second.have_header || payload.size() < 12) {
        ConnectionLost("AMQP framing: a content header without its method");
        return;
    }
    IncomingContent& content = it->second;
    void* decoded = nullptr;
    amqp_bytes_t encoded{payload.size() - 12, const_cast<char*>(payload.data() + 12)};
    if (amqp_decode_properties(AMQP_BASIC_CLASS, pool_.get(), encoded, &decoded) != AMQP_STATUS_OK) {
        ConnectionLost("AMQP framing: message properties could not be decoded");
        return;
    }
    content.have_header = true;
    content.body_size = ReadU64(payload, 4);
    content.delivery.message.properties = DecodeProperties(*static_cast<amqp_basic_properties_t*>(decoded));
    content.delivery.message.body.reserve(content.body_size);
    if (content.body_size == 0) FinishContent(channel);
}

void RabbitMqTransport::OnContentBody(std::uint16_t channel, std::string_view payload) {
    auto it = incoming_.find(channel);
    if (it == incoming_.end() || !it->second.active || !it->second.have_header) {
        ConnectionLost("AMQP framing: a content body without its header");
        return;
    }
    auto& body = it->second.delivery.message.body;
    body.append(payload);
    if (body.size() > it->second.body_size) {
        ConnectionLost("AMQP framing: a content body longer than its header said");
        return;
    }
    if (body.size() == it->second.body_size) FinishContent(channel);
}

void RabbitMqTransport::FinishContent(std::uint16_t channel) {
    IncomingContent content = std::move(incoming_[channel]);
    incoming_[channel] = IncomingContent{};
    if (content.returned) {
        OnReturned(content);
        return;
    }
    for (auto& [id, consumer] : consumers_) {
        if (consumer.tag != content.consumer_tag) continue;
        content.delivery.queue = consumer.queue;
        auto handler = consumer.handler;  // the handler may cancel its own consumer
        handler(std::move(content.delivery));
        return;
    }
    // Its consumer was cancelled while the delivery was on its way: back to the queue.
    Nack(content.delivery, true);
}

void RabbitMqTransport::Ack(const Delivery& delivery) {
    if (!IsConnected() || delivery.connection_generation != generation_) return;  // the broker will redeliver it
    acks_.push_back(delivery.delivery_tag);
    flush_at_turn_end_.Request();
}

void RabbitMqTransport::Nack(const Delivery& delivery, bool requeue) {
    if (!IsConnected() || delivery.connection_generation != generation_) return;
    unsettled_.erase(delivery.delivery_tag);
    amqp_basic_nack_t nack{delivery.delivery_tag, 0, requeue ? amqp_boolean_t{1} : amqp_boolean_t{0}};
    Send(kConsumeChannel, AMQP_BASIC_NACK_METHOD, &nack);
}

}  // namespace messaging
