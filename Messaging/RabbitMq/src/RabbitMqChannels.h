// What the files of the RabbitMQ transport share: the channels it opens, its frame limits and how it
// words a close from the broker. Private to Messaging/RabbitMq/src.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "RabbitMq/FieldTable.h"

namespace messaging {

// Consumers, their acks and nacks use one channel; declarations, publishes and their confirms use
// another, as MassTransit keeps receive endpoints and publishing apart. On the broker each channel is
// a process of its own, so deliveries and acks do not queue behind the publishes of the connection.
inline constexpr std::uint16_t kConsumeChannel = 1;
inline constexpr std::uint16_t kPublishChannel = 2;
// Passive declarations that check the consumed queues (RabbitMqQueueCheck.cpp): a refusal closes this
// channel alone.
inline constexpr std::uint16_t kQueueCheckChannel = 3;
inline constexpr std::size_t kFlushThreshold = 256 * 1024;  // hand buffered frames to the socket beyond this much
inline constexpr std::uint32_t kPreferredFrameMax = 131072;

inline std::string CloseReason(const char* who, std::uint16_t code, amqp_bytes_t text) {
    return std::string(who) + " closed by the broker: " + std::to_string(code) + " " + AmqpString(text);
}

}  // namespace messaging
