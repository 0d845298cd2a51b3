#include "Runtime/TcpStream.h"

#include <cstring>
#include <stdexcept>
#include <vector>

#include "Runtime/HandleState.h"

namespace messaging {
namespace {

constexpr std::size_t kReadBufferBytes = 64 * 1024;

struct WriteRequest {
    uv_write_t request{};
    std::string bytes;
};

}  // namespace

struct TcpStream::State : HandleState {
    // A name resolution in flight: it outlives its stream when the stream is closed first, and then
    // only frees itself.
    struct Resolve {
        uv_getaddrinfo_t request{};
        State* state = nullptr;
    };

    uv_tcp_t tcp{};
    Callbacks callbacks;
    std::vector<char> read_buffer = std::vector<char>(kReadBufferBytes);
    Resolve* resolving = nullptr;
    uv_connect_t connect{};
    bool connected = false;
    bool failed = false;  // no callback runs once set (a failure, or the owner closed the stream)
    int port = 0;

    ~State() override {
        if (resolving) resolving->state = nullptr;
    }
    static State& Of(uv_handle_t* handle) { return *static_cast<State*>(static_cast<HandleState*>(handle->data)); }
    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }

    void Fail(int status) {
        if (failed) return;
        failed = true;
        uv_read_stop(stream());
        if (auto failed_callback = std::move(callbacks.failed)) failed_callback(status);
    }

    static void OnResolved(uv_getaddrinfo_t* request, int status, addrinfo* result) {
        auto* resolve = reinterpret_cast<Resolve*>(request);
        State* self = resolve->state;
        delete resolve;
        if (!self) {  // the stream was closed while the name was being resolved
            uv_freeaddrinfo(result);
            return;
        }
        self->resolving = nullptr;
        // Closed after the name was resolved but before this callback ran (both in one turn of the
        // loop): connecting now would start I/O on a closing handle, which libuv aborts on.
        if (self->failed) {
            uv_freeaddrinfo(result);
            return;
        }
        if (status < 0 || !result) {
            uv_freeaddrinfo(result);
            self->Fail(status < 0 ? status : UV_EAI_NONAME);
            return;
        }
        sockaddr_storage address{};
        std::memcpy(&address, result->ai_addr, result->ai_addrlen);
        uv_freeaddrinfo(result);
        const auto port_bytes = htons(static_cast<std::uint16_t>(self->port));
        if (address.ss_family == AF_INET6)
            reinterpret_cast<sockaddr_in6*>(&address)->sin6_port = port_bytes;
        else
            reinterpret_cast<sockaddr_in*>(&address)->sin_port = port_bytes;
        self->connect.data = self;
        const int rc = uv_tcp_connect(&self->connect, &self->tcp, reinterpret_cast<const sockaddr*>(&address),
                                      &State::OnConnected);
        if (rc < 0) self->Fail(rc);
    }

    static void OnConnected(uv_connect_t* connect, int status) {
        if (status == UV_ECANCELED) return;  // closed while connecting: the state is being freed
        auto* self = static_cast<State*>(connect->data);
        if (status < 0) {
            self->Fail(status);
            return;
        }
        self->connected = true;
        uv_tcp_nodelay(&self->tcp, 1);
        uv_read_start(self->stream(), &State::OnAllocate, &State::OnRead);
        if (!self->failed && self->callbacks.connected) self->callbacks.connected();
    }

    static void OnAllocate(uv_handle_t* handle, std::size_t, uv_buf_t* buffer) {
        auto& self = Of(handle);
        *buffer = uv_buf_init(self.read_buffer.data(), static_cast<unsigned>(self.read_buffer.size()));
    }

    static void OnRead(uv_stream_t* stream, ssize_t n, const uv_buf_t*) {
        auto& self = Of(reinterpret_cast<uv_handle_t*>(stream));
        if (n < 0) {
            self.Fail(static_cast<int>(n));
            return;
        }
        if (n > 0 && !self.failed && self.callbacks.received)
            self.callbacks.received(self.read_buffer.data(), static_cast<std::size_t>(n));
    }

    static void OnWritten(uv_write_t* request, int status) {
        auto* write = reinterpret_cast<WriteRequest*>(request);
        auto* self = static_cast<State*>(request->data);
        delete write;
        // Cancelled writes belong to a stream being closed; its owner has let go of it.
        if (status < 0 && status != UV_ECANCELED) self->Fail(status);
    }
};

TcpStream::TcpStream(EventLoop& loop, Callbacks callbacks) : state_(new State), loop_lifetime_(loop.lifetime()) {
    state_->callbacks = std::move(callbacks);
    state_->tcp.data = static_cast<HandleState*>(state_);
    if (int rc = uv_tcp_init(loop.raw(), &state_->tcp); rc < 0) {
        delete state_;
        throw std::runtime_error(std::string("uv_tcp_init: ") + uv_strerror(rc));
    }
}

TcpStream::~TcpStream() {
    if (loop_lifetime_.expired()) return;  // the loop's destructor closed and freed the handle
    // The callbacks stay until the close callback frees them (one of them may be running now), but
    // `failed` keeps any from being called again.
    state_->failed = true;
    CloseAndFree(reinterpret_cast<uv_handle_t*>(&state_->tcp));
}

void TcpStream::Connect(const std::string& host, int port) {
    if (loop_lifetime_.expired()) throw std::logic_error("TcpStream::Connect: its event loop is gone");
    state_->port = port;
    auto* resolve = new State::Resolve;
    resolve->state = state_;
    state_->resolving = resolve;
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    const int rc =
        uv_getaddrinfo(state_->tcp.loop, &resolve->request, &State::OnResolved, host.c_str(), nullptr, &hints);
    if (rc < 0) {
        state_->resolving = nullptr;
        delete resolve;
        state_->Fail(rc);
    }
}

void TcpStream::Write(std::string_view bytes) {
    if (loop_lifetime_.expired()) return;
    if (state_->failed || !state_->connected || bytes.empty()) return;
    // Whatever the kernel takes now is not copied at all; only the rest is, to wait in libuv, in order.
    if (uv_stream_get_write_queue_size(state_->stream()) == 0) {
        uv_buf_t buffer = uv_buf_init(const_cast<char*>(bytes.data()), static_cast<unsigned>(bytes.size()));
        const int written = uv_try_write(state_->stream(), &buffer, 1);
        if (written == static_cast<int>(bytes.size())) return;
        if (written > 0) {
            bytes.remove_prefix(static_cast<std::size_t>(written));
        } else if (written != UV_EAGAIN) {
            state_->Fail(written);
            return;
        }
    }
    auto* request = new WriteRequest;
    request->bytes = bytes;
    request->request.data = state_;
    uv_buf_t buffer = uv_buf_init(request->bytes.data(), static_cast<unsigned>(request->bytes.size()));
    if (int rc = uv_write(&request->request, state_->stream(), &buffer, 1, &State::OnWritten); rc < 0) {
        delete request;
        state_->Fail(rc);
    }
}

std::size_t TcpStream::queued_bytes() const {
    return uv_stream_get_write_queue_size(state_->stream());
}

}  // namespace messaging
