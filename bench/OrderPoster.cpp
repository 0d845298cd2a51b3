#include "OrderPoster.h"

#include <uv.h>

#include <strings.h>
#include <algorithm>
#include <cstdlib>
#include <deque>
#include <memory>
#include <stdexcept>

namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

class Poster {
  public:
    Poster(const std::string& host, int port, int connections, std::vector<PostedOrder>& orders)
        : host_(host), orders_(orders), read_buffer_(64 * 1024) {
        sockaddr_in address{};
        if (uv_ip4_addr(host.c_str(), port, &address) != 0)
            throw std::runtime_error("the load generator needs an IPv4 address for --http-host, not " + host);
        if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init failed");
        uv_timer_init(&loop_, &timer_);
        timer_.data = this;
        for (int i = 0; i < connections; ++i) {
            auto connection = std::make_unique<Connection>();
            connection->owner = this;
            uv_tcp_init(&loop_, &connection->tcp);
            connection->tcp.data = connection.get();
            connection->connect.data = connection.get();
            uv_tcp_connect(&connection->connect, &connection->tcp, reinterpret_cast<const sockaddr*>(&address),
                           [](uv_connect_t* request, int status) {
                               auto* self = static_cast<Connection*>(request->data);
                               self->owner->Connected(*self, status);
                           });
            connections_.push_back(std::move(connection));
        }
        opening_ = connections;
    }

    ~Poster() {
        // Every handle is closed by now (Finish); run the loop until their close callbacks are done.
        uv_run(&loop_, UV_RUN_DEFAULT);
        uv_loop_close(&loop_);
    }

    void Run() {
        if (orders_.empty()) {
            Finish();
        } else {
            Arm();
        }
        uv_run(&loop_, UV_RUN_DEFAULT);
    }

  private:
    struct Connection {
        uv_tcp_t tcp{};
        uv_connect_t connect{};
        Poster* owner = nullptr;
        std::string input;
        std::size_t current = 0;  // the order in flight, valid while busy
        bool busy = false;
        bool open = false;
        bool closed = false;
        uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp); }
    };

    void Connected(Connection& connection, int status) {
        --opening_;
        if (status < 0) {
            Fail(connection);
            return;
        }
        connection.open = true;
        ++open_;
        uv_tcp_nodelay(&connection.tcp, 1);
        uv_read_start(
            connection.stream(),
            [](uv_handle_t* handle, std::size_t, uv_buf_t* buffer) {
                auto* self = static_cast<Connection*>(handle->data);
                auto& storage = self->owner->read_buffer_;
                *buffer = uv_buf_init(storage.data(), static_cast<unsigned>(storage.size()));
            },
            [](uv_stream_t* stream, ssize_t read, const uv_buf_t* buffer) {
                auto* self = static_cast<Connection*>(stream->data);
                if (read > 0) self->owner->Received(*self, buffer->base, static_cast<std::size_t>(read));
                if (read < 0) self->owner->Fail(*self);
            });
        idle_.push_back(&connection);
        Dispatch();
    }

    // Queues every order that is due and sends what the idle connections can take.
    void Dispatch() {
        const auto now = Clock::now();
        while (next_due_ < orders_.size() && orders_[next_due_].due <= now) due_.push_back(next_due_++);
        while (!due_.empty() && !idle_.empty()) {
            Connection* connection = idle_.back();
            idle_.pop_back();
            const std::size_t index = due_.front();
            due_.pop_front();
            Send(*connection, index);
        }
        if (open_ == 0 && opening_ == 0) {
            // No connection left: whatever is not sent yet fails.
            while (!due_.empty()) Answer(due_.front(), -1), due_.pop_front();
            while (next_due_ < orders_.size()) Answer(next_due_++, -1);
        }
    }

    void Arm() {
        Dispatch();
        if (next_due_ >= orders_.size()) return;
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(orders_[next_due_].due - Clock::now());
        uv_update_time(&loop_);
        uv_timer_start(
            &timer_, [](uv_timer_t* timer) { static_cast<Poster*>(timer->data)->Arm(); },
            static_cast<std::uint64_t>(std::max<std::int64_t>(0, wait.count())), 0);
    }

    void Send(Connection& connection, std::size_t index) {
        connection.busy = true;
        connection.current = index;
        orders_[index].sent = Clock::now();
        const std::string& body = orders_[index].body;
        auto request = std::make_unique<std::string>();
        request->reserve(128 + body.size());
        *request += "POST /order HTTP/1.1\r\nHost: ";
        *request += host_;
        *request += "\r\nContent-Type: application/json\r\nContent-Length: ";
        *request += std::to_string(body.size());
        *request += "\r\n\r\n";
        *request += body;
        uv_buf_t buffer = uv_buf_init(request->data(), static_cast<unsigned>(request->size()));
        const int written = uv_try_write(connection.stream(), &buffer, 1);
        if (written == static_cast<int>(request->size())) return;
        if (written < 0 && written != UV_EAGAIN) {
            Fail(connection);
            return;
        }
        if (written > 0) request->erase(0, static_cast<std::size_t>(written));
        struct Write {
            uv_write_t request{};
            std::unique_ptr<std::string> data;
        };
        auto* write = new Write;
        write->data = std::move(request);
        write->request.data = write;
        buffer = uv_buf_init(write->data->data(), static_cast<unsigned>(write->data->size()));
        uv_write(&write->request, connection.stream(), &buffer, 1,
                 [](uv_write_t* done, int) { delete static_cast<Write*>(done->data); });
    }

    void Received(Connection& connection, const char* data, std::size_t size) {
        connection.input.append(data, size);
        for (;;) {
            const std::size_t head_end = connection.input.find("\r\n\r\n");
            if (head_end == std::string::npos) return;
            std::size_t length = 0;
            for (std::size_t line = connection.input.find("\r\n"); line < head_end;
                 line = connection.input.find("\r\n", line + 2)) {
                static constexpr char kLength[] = "content-length:";
                if (strncasecmp(connection.input.c_str() + line + 2, kLength, sizeof kLength - 1) == 0)
                    length = std::strtoul(connection.input.c_str() + line + 2 + sizeof kLength - 1, nullptr, 10);
            }
            if (connection.input.size() < head_end + 4 + length) return;
            const int status = std::atoi(connection.input.c_str() + 9);  // "HTTP/1.1 202 ..."
            connection.input.erase(0, head_end + 4 + length);
            if (status == 100 || !connection.busy) continue;  // an interim answer, or one nobody asked for
            connection.busy = false;
            Answer(connection.current, status);
            idle_.push_back(&connection);
            Dispatch();
        }
    }

    void Answer(std::size_t index, int status) {
        orders_[index].status = status;
        orders_[index].answered = Clock::now();
        if (++answered_ == orders_.size()) Finish();
    }

    void Fail(Connection& connection) {
        if (connection.closed) return;
        connection.closed = true;
        if (connection.open) --open_;
        idle_.erase(std::remove(idle_.begin(), idle_.end(), &connection), idle_.end());
        if (connection.busy) {
            connection.busy = false;
            Answer(connection.current, -1);
        }
        uv_close(reinterpret_cast<uv_handle_t*>(&connection.tcp), nullptr);
        Dispatch();
    }

    void Finish() {
        if (finished_) return;
        finished_ = true;
        uv_timer_stop(&timer_);
        uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
        for (auto& connection : connections_)
            if (!connection->closed) {
                connection->closed = true;
                uv_close(reinterpret_cast<uv_handle_t*>(&connection->tcp), nullptr);
            }
    }

    uv_loop_t loop_{};
    uv_timer_t timer_{};
    std::string host_;
    std::vector<PostedOrder>& orders_;
    std::vector<char> read_buffer_;
    std::vector<std::unique_ptr<Connection>> connections_;
    std::vector<Connection*> idle_;
    std::deque<std::size_t> due_;
    std::size_t next_due_ = 0;
    std::size_t answered_ = 0;
    int opening_ = 0;
    int open_ = 0;
    bool finished_ = false;
};

}  // namespace

void PostOrders(const std::string& host, int port, int connections, std::vector<PostedOrder>& orders) {
    Poster poster(host, port, std::max(1, connections), orders);
    poster.Run();
}

}  // namespace bench
