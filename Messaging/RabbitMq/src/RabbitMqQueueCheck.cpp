// The queue check: whether the broker still serves each queue this connection consumes from.
#include <spdlog/spdlog.h>

#include "RabbitMq/RabbitMqTransport.h"
#include "RabbitMqChannels.h"

namespace messaging {
namespace {

void SetProblem(const std::string& queue, std::string& problem, std::string now) {
    if (problem == now) return;
    if (now.empty())
        spdlog::info("RabbitMQ serves queue '{}' again", queue);
    else
        spdlog::warn("RabbitMQ: {}", now);
    problem = std::move(now);
}

}  // namespace

void RabbitMqTransport::StartQueueChecks() {
    queue_check_channel_open_ = false;
    if (settings_.queue_check_interval_ms <= 0) return;
    queue_check_timer_ = std::make_unique<Timer>(loop_);
    const auto period = std::chrono::milliseconds(settings_.queue_check_interval_ms);
    queue_check_timer_->Start(
        period, [this] { CheckQueues(); }, period);
}

void RabbitMqTransport::CheckQueues() {
    if (phase_ != Phase::kOpen) return;
    // A check still unanswered (a queue without a leader can keep the broker busy for seconds) is
    // not joined by another.
    if (!pending_replies_[kQueueCheckChannel].empty()) return;
    if (!queue_check_channel_open_) {
        // The checks below queue behind the open: replies on a channel come in the order asked.
        amqp_channel_open_t open{};
        SendRpc(kQueueCheckChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "channel.open",
                [this](void*) { queue_check_channel_open_ = true; });
    }
    for (const auto& [id, consumer] : consumers_) {
        if (consumer.tag.empty()) continue;
        amqp_queue_declare_t declare{};
        declare.queue = AmqpBytes(consumer.queue);
        declare.passive = 1;
        declare.arguments = amqp_empty_table;
        SendRpc(kQueueCheckChannel, AMQP_QUEUE_DECLARE_METHOD, &declare, AMQP_QUEUE_DECLARE_OK_METHOD,
                "checking queue '" + consumer.queue + "'", [this, id = id, tag = consumer.tag](void* decoded) {
                    auto it = consumers_.find(id);
                    if (it == consumers_.end() || it->second.tag != tag) return;
                    // Our consumer is one of the queue's while its leader serves it.
                    const bool served = static_cast<amqp_queue_declare_ok_t*>(decoded)->consumer_count > 0;
                    SetProblem(it->second.queue, it->second.problem,
                               served ? std::string()
                                      : "queue '" + it->second.queue +
                                            "' counts no consumer although this service consumes from it: it "
                                            "has no leader (a quorum queue whose member is down) and delivers "
                                            "nothing until it has one again");
                });
        pending_replies_[kQueueCheckChannel].back().checked_consumer = id;
    }
}

void RabbitMqTransport::OnQueueCheckChannelClosed(const amqp_channel_close_t& close) {
    auto& replies = pending_replies_[kQueueCheckChannel];
    if (!replies.empty() && replies.front().checked_consumer != 0)
        if (auto it = consumers_.find(replies.front().checked_consumer); it != consumers_.end())
            SetProblem(it->second.queue, it->second.problem,
                       "checking queue '" + it->second.queue +
                           "': " + CloseReason("the channel", close.reply_code, close.reply_text));
    // The broker ignores what was sent on the channel after the method it refused; the next check
    // opens the channel again.
    replies.clear();
    queue_check_channel_open_ = false;
    amqp_channel_close_ok_t close_ok{};
    Send(kQueueCheckChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
}

}  // namespace messaging
