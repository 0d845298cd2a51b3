// AMQP 0-9-1 framing: FrameReader cuts frames out of bytes as they arrive (a frame split across reads
// waits for its rest), and FrameWriter encodes methods, message content and heartbeats into a
// buffer. rabbitmq-c encodes and decodes the method arguments; the socket is never its business.
#pragma once

#include <amqp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace messaging {

struct AmqpFrame {
    std::uint8_t type = 0;  // AMQP_FRAME_METHOD, AMQP_FRAME_HEADER, AMQP_FRAME_BODY, AMQP_FRAME_HEARTBEAT
    std::uint16_t channel = 0;
    std::string_view payload;  // valid until the next call to Append or Next
};

class FrameReader {
  public:
    void Append(const char* data, std::size_t size);
    // The next complete frame, or nullopt when more bytes are needed. A malformed frame (no frame-end
    // octet, larger than `max_frame`) sets error() and returns nullopt from then on.
    std::optional<AmqpFrame> Next();
    const std::string& error() const { return error_; }
    void set_max_frame(std::size_t bytes) { max_frame_ = bytes; }
    void Reset();

  private:
    std::string buffer_;
    std::size_t offset_ = 0;  // start of the first frame not yet returned
    std::size_t max_frame_ = 1 << 20;
    std::string error_;
};

class FrameWriter {
  public:
    // The eight bytes that open a connection: "AMQP" 0 0 9 1.
    void AppendProtocolHeader();
    // Encodes a method of rabbitmq-c's `amqp_*_t` argument structs; false if it does not fit a frame.
    bool AppendMethod(std::uint16_t channel, amqp_method_number_t method, void* arguments);
    // A content header (basic class) and the body in frames of at most `frame_max` bytes; false if
    // the properties do not fit a frame.
    bool AppendContent(std::uint16_t channel, amqp_basic_properties_t& properties, std::string_view body);
    void AppendHeartbeat();

    void set_frame_max(std::size_t bytes) { scratch_.assign(bytes, 0); }
    std::string& buffer() { return buffer_; }
    std::string Take() { return std::exchange(buffer_, {}); }
    // Empties the buffer once its frames are written. It keeps its memory for the next batch, so a
    // batch does not grow a new one from nothing (copying it at each doubling), unless a burst made
    // it larger than a batch normally is.
    void Clear() {
        if (buffer_.capacity() > kRetainedBytes)
            buffer_ = std::string();
        else
            buffer_.clear();
    }

  private:
    static constexpr std::size_t kRetainedBytes = 512 * 1024;  // above the flush threshold
    std::string buffer_;
    std::vector<char> scratch_ = std::vector<char>(131072);
};

// A rabbitmq-c decoding pool: memory for one decoded frame, recycled after it is handled.
class DecodePool {
  public:
    DecodePool() { init_amqp_pool(&pool_, 16 * 1024); }
    ~DecodePool() { empty_amqp_pool(&pool_); }
    DecodePool(const DecodePool&) = delete;
    DecodePool& operator=(const DecodePool&) = delete;
    amqp_pool_t* get() { return &pool_; }
    void Recycle() { recycle_amqp_pool(&pool_); }

  private:
    amqp_pool_t pool_{};
};

// Decodes a method frame's payload into `pool`: its number and rabbitmq-c's argument struct.
std::optional<std::pair<amqp_method_number_t, void*>> DecodeMethod(std::string_view payload, amqp_pool_t* pool);

std::uint16_t ReadU16(std::string_view bytes, std::size_t at);
std::uint32_t ReadU32(std::string_view bytes, std::size_t at);
std::uint64_t ReadU64(std::string_view bytes, std::size_t at);

}  // namespace messaging
