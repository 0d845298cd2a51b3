#include "RabbitMq/AmqpFrames.h"

#include <utility>

namespace messaging {
namespace {

constexpr std::size_t kFrameHeader = 7;                   // type, channel, payload size
constexpr std::size_t kFrameOverhead = kFrameHeader + 1;  // ... and the frame-end octet

void PutU8(std::string& out, std::uint8_t v) {
    out.push_back(static_cast<char>(v));
}
void PutU16(std::string& out, std::uint16_t v) {
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v & 0xFF));
}
void PutU32(std::string& out, std::uint32_t v) {
    PutU16(out, static_cast<std::uint16_t>(v >> 16));
    PutU16(out, static_cast<std::uint16_t>(v & 0xFFFF));
}
void PutU64(std::string& out, std::uint64_t v) {
    PutU32(out, static_cast<std::uint32_t>(v >> 32));
    PutU32(out, static_cast<std::uint32_t>(v & 0xFFFFFFFF));
}
void PutFrameStart(std::string& out, std::uint8_t type, std::uint16_t channel, std::size_t payload_size) {
    PutU8(out, type);
    PutU16(out, channel);
    PutU32(out, static_cast<std::uint32_t>(payload_size));
}

}  // namespace

std::uint16_t ReadU16(std::string_view bytes, std::size_t at) {
    return static_cast<std::uint16_t>((static_cast<std::uint8_t>(bytes[at]) << 8) |
                                      static_cast<std::uint8_t>(bytes[at + 1]));
}
std::uint32_t ReadU32(std::string_view bytes, std::size_t at) {
    return (static_cast<std::uint32_t>(ReadU16(bytes, at)) << 16) | ReadU16(bytes, at + 2);
}
std::uint64_t ReadU64(std::string_view bytes, std::size_t at) {
    return (static_cast<std::uint64_t>(ReadU32(bytes, at)) << 32) | ReadU32(bytes, at + 4);
}

void FrameReader::Append(const char* data, std::size_t size) {
    if (offset_ > 0 && offset_ == buffer_.size()) {
        buffer_.clear();
        offset_ = 0;
    } else if (offset_ > 64 * 1024) {
        buffer_.erase(0, offset_);
        offset_ = 0;
    }
    buffer_.append(data, size);
}

std::optional<AmqpFrame> FrameReader::Next() {
    if (!error_.empty()) return std::nullopt;
    const std::string_view rest(buffer_.data() + offset_, buffer_.size() - offset_);
    if (rest.size() < kFrameHeader) return std::nullopt;
    const std::size_t size = ReadU32(rest, 3);
    if (size + kFrameOverhead > max_frame_) {
        error_ = "a frame of " + std::to_string(size) + " bytes is larger than the negotiated maximum";
        return std::nullopt;
    }
    if (rest.size() < size + kFrameOverhead) return std::nullopt;
    if (static_cast<std::uint8_t>(rest[kFrameHeader + size]) != AMQP_FRAME_END) {
        error_ = "a frame does not end with the frame-end octet";
        return std::nullopt;
    }
    AmqpFrame frame;
    frame.type = static_cast<std::uint8_t>(rest[0]);
    frame.channel = ReadU16(rest, 1);
    frame.payload = rest.substr(kFrameHeader, size);
    offset_ += size + kFrameOverhead;
    return frame;
}

void FrameReader::Reset() {
    buffer_.clear();
    offset_ = 0;
    error_.clear();
    max_frame_ = 1 << 20;
}

void FrameWriter::AppendProtocolHeader() {
    buffer_.append("AMQP\x00\x00\x09\x01", 8);
}

bool FrameWriter::AppendMethod(std::uint16_t channel, amqp_method_number_t method, void* arguments) {
    const int encoded = amqp_encode_method(method, arguments, amqp_bytes_t{scratch_.size(), scratch_.data()});
    if (encoded < 0) return false;
    PutFrameStart(buffer_, AMQP_FRAME_METHOD, channel, 4 + static_cast<std::size_t>(encoded));
    PutU32(buffer_, method);
    buffer_.append(scratch_.data(), static_cast<std::size_t>(encoded));
    PutU8(buffer_, AMQP_FRAME_END);
    return true;
}

bool FrameWriter::AppendContent(std::uint16_t channel, amqp_basic_properties_t& properties, std::string_view body) {
    const int encoded =
        amqp_encode_properties(AMQP_BASIC_CLASS, &properties, amqp_bytes_t{scratch_.size(), scratch_.data()});
    if (encoded < 0 || static_cast<std::size_t>(encoded) + 12 + kFrameOverhead > scratch_.size()) return false;
    PutFrameStart(buffer_, AMQP_FRAME_HEADER, channel, 12 + static_cast<std::size_t>(encoded));
    PutU16(buffer_, AMQP_BASIC_CLASS);
    PutU16(buffer_, 0);  // weight
    PutU64(buffer_, body.size());
    buffer_.append(scratch_.data(), static_cast<std::size_t>(encoded));
    PutU8(buffer_, AMQP_FRAME_END);
    const std::size_t max_fragment = scratch_.size() - kFrameOverhead;
    for (std::size_t offset = 0; offset < body.size(); offset += max_fragment) {
        const std::size_t length = std::min(max_fragment, body.size() - offset);
        PutFrameStart(buffer_, AMQP_FRAME_BODY, channel, length);
        buffer_.append(body.substr(offset, length));
        PutU8(buffer_, AMQP_FRAME_END);
    }
    return true;
}

void FrameWriter::AppendHeartbeat() {
    PutFrameStart(buffer_, AMQP_FRAME_HEARTBEAT, 0, 0);
    PutU8(buffer_, AMQP_FRAME_END);
}

std::optional<std::pair<amqp_method_number_t, void*>> DecodeMethod(std::string_view payload, amqp_pool_t* pool) {
    if (payload.size() < 4) return std::nullopt;
    const amqp_method_number_t method = ReadU32(payload, 0);
    void* decoded = nullptr;
    amqp_bytes_t arguments{payload.size() - 4, const_cast<char*>(payload.data() + 4)};
    if (amqp_decode_method(method, pool, arguments, &decoded) != AMQP_STATUS_OK) return std::nullopt;
    return std::make_pair(method, decoded);
}

}  // namespace messaging
