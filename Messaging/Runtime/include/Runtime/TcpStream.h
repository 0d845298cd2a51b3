// An outgoing TCP connection on the event loop: the host name is resolved, the connection made, read
// and written without ever blocking the loop thread. Writes queue in order (in libuv when the peer
// is slow to read), so a stalled peer costs memory, never a wait. Loop thread only.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "Runtime/EventLoop.h"

namespace messaging {

class TcpStream {
  public:
    struct Callbacks {
        std::function<void()> connected;
        std::function<void(const char* data, std::size_t size)> received;
        // The connection could not be made, or ended (status is a libuv error, UV_EOF when the peer
        // closed it). Called at most once; the stream is unusable afterwards.
        std::function<void(int status)> failed;
    };

    TcpStream(EventLoop& loop, Callbacks callbacks);
    ~TcpStream();  // closes the socket; bytes still queued are dropped and no callback runs
    TcpStream(const TcpStream&) = delete;
    TcpStream& operator=(const TcpStream&) = delete;

    void Connect(const std::string& host, int port);
    // Writes `bytes` after everything written before; a no-op once the stream has failed. What the
    // kernel does not take at once is copied and queued, so the caller may reuse its buffer.
    void Write(std::string_view bytes);
    // Bytes handed to Write that the kernel has not taken yet.
    std::size_t queued_bytes() const;

  private:
    struct State;
    State* state_;  // freed by the uv_close callback, or by the loop's destructor if it goes first
    std::weak_ptr<void> loop_lifetime_;
};

}  // namespace messaging
