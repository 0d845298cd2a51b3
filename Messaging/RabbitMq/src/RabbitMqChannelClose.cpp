// A channel the broker closed: which declaration it refused, and what follows from the refusal.
#include "RabbitMq/RabbitMqTransport.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "RabbitMqChannels.h"

namespace messaging {

void RabbitMqTransport::OnChannelClose(std::uint16_t channel, const amqp_channel_close_t& close) {
    if (channel == kQueueCheckChannel) return OnQueueCheckChannelClosed(close);
    std::string reason =
        CloseReason(("channel " + std::to_string(channel)).c_str(), close.reply_code, close.reply_text);
    bool declaring = false;
    std::string borrowed_exchange;
    std::string on_demand_queue;
    if (auto it = pending_replies_.find(channel); it != pending_replies_.end() && !it->second.empty()) {
        const auto expected = it->second.front().reply;
        declaring = expected == AMQP_QUEUE_DECLARE_OK_METHOD || expected == AMQP_EXCHANGE_DECLARE_OK_METHOD;
        reason = it->second.front().what + ": " + reason;
        borrowed_exchange = it->second.front().borrowed_exchange;
        on_demand_queue = it->second.front().on_demand_queue;
    }
    // 406 to a declaration: the entity exists with other properties or arguments. Another
    // party's exchange serves as it is: forget the declaration, so that the reconnect does
    // not repeat it and what was to be sent there goes to the existing exchange. 403: this
    // user may not declare it; forget the declaration too, and refuse what is sent there
    // from now on, as MassTransit's send fails, instead of closing the channel each time.
    const bool borrowed_refusal =
        declaring && !borrowed_exchange.empty() &&
        (close.reply_code == AMQP_PRECONDITION_FAILED || close.reply_code == AMQP_ACCESS_REFUSED);
    const bool on_demand_refusal =
        declaring && !on_demand_queue.empty() &&
        (close.reply_code == AMQP_PRECONDITION_FAILED || close.reply_code == AMQP_ACCESS_REFUSED);
    if (on_demand_refusal) {
        // Only the messages that need this queue wait; it is not declared again on reconnect.
        std::erase_if(topology_, [&](const DeclaredTopology& entry) {
            return entry.topology.on_demand && !entry.topology.queues.empty() &&
                   entry.topology.queues.front().name == on_demand_queue;
        });
        if (on_demand_refusals_.Refuse(on_demand_queue, reason))
            spdlog::error(
                "RabbitMQ: {} cannot be used as this service declares it ({}). The messages that "
                "need it stay in their queues and are tried again later; everything else goes on",
                on_demand_queue, reason);
    } else if (borrowed_refusal) {
        std::erase_if(topology_, [&](const DeclaredTopology& entry) {
            const auto& exchanges = entry.topology.exchanges;
            return entry.topology.borrowed &&
                   std::any_of(exchanges.begin(), exchanges.end(),
                               [&](const ExchangeSpec& spec) { return spec.name == borrowed_exchange; });
        });
        if (close.reply_code == AMQP_ACCESS_REFUSED) refused_exchanges_[borrowed_exchange] = reason;
    } else if (declaring && close.reply_code == AMQP_PRECONDITION_FAILED)
        refusal_ = Status::PreconditionFailed(
            "the broker refused a declaration because what exists differs. " + reason +
            ". Make the settings match the existing entity, or delete it, then restart the service");
    amqp_channel_close_ok_t close_ok{};
    Send(channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
    Flush();
    spdlog::error("RabbitMQ: {}", reason);
    ConnectionLost(reason);
}

}  // namespace messaging
