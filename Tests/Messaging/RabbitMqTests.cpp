// RabbitMq without a broker: ack planning and a peer that never answers the handshake.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>

#include "RabbitMq/AckPlan.h"
#include "RabbitMq/AmqpFrames.h"
#include "RabbitMq/RabbitMqTransport.h"
#include "Support/Waiting.h"

using namespace messaging;
using namespace std::chrono_literals;

TEST_SUITE("RabbitMq") {
    TEST_CASE("Frames are cut as bytes arrive - a frame split across reads waits for its rest") {
        FrameWriter writer;
        amqp_basic_ack_t ack{42, 1};
        REQUIRE(writer.AppendMethod(1, AMQP_BASIC_ACK_METHOD, &ack));
        writer.AppendHeartbeat();
        const std::string bytes = writer.Take();
        FrameReader reader;
        reader.Append(bytes.data(), 5);  // part of the method frame's header
        CHECK_FALSE(reader.Next());
        reader.Append(bytes.data() + 5, bytes.size() - 5 - 3);  // all but the heartbeat's last bytes
        const auto method = reader.Next();
        REQUIRE(method);
        CHECK(method->type == AMQP_FRAME_METHOD);
        CHECK(method->channel == 1);
        DecodePool pool;
        const auto decoded = DecodeMethod(method->payload, pool.get());
        REQUIRE(decoded);
        CHECK(decoded->first == AMQP_BASIC_ACK_METHOD);
        CHECK(static_cast<amqp_basic_ack_t*>(decoded->second)->delivery_tag == 42u);
        CHECK_FALSE(reader.Next());  // the heartbeat is not complete yet
        reader.Append(bytes.data() + bytes.size() - 3, 3);
        const auto heartbeat = reader.Next();
        REQUIRE(heartbeat);
        CHECK(heartbeat->type == AMQP_FRAME_HEARTBEAT);
        CHECK(reader.error().empty());
    }

    TEST_CASE("A frame without its frame-end octet or over the negotiated size is a framing error") {
        FrameWriter writer;
        writer.AppendHeartbeat();
        std::string bytes = writer.Take();
        bytes.back() = 0;
        FrameReader broken;
        broken.Append(bytes.data(), bytes.size());
        CHECK_FALSE(broken.Next());
        CHECK(broken.error().find("frame-end") != std::string::npos);

        FrameWriter large;
        amqp_basic_properties_t properties{};
        REQUIRE(large.AppendContent(2, properties, std::string(10000, 'x')));
        const std::string content = large.Take();
        FrameReader small;
        small.set_max_frame(4096);
        small.Append(content.data(), content.size());
        REQUIRE(small.Next());  // the content header fits
        CHECK_FALSE(small.Next());
        CHECK(small.error().find("larger than the negotiated maximum") != std::string::npos);
    }

    TEST_CASE("Acks that settle the oldest deliveries become one multiple-ack - the rest go one by one") {
        const std::set<std::uint64_t> unsettled{3, 4, 5, 6, 9};
        auto plan = PlanAcks(unsettled, {5, 3, 4});
        CHECK(plan.multiple_up_to == 5);
        CHECK(plan.single.empty());
        plan = PlanAcks(unsettled, {4, 6});  // 3 is still being handled: a multiple-ack would settle it
        CHECK(plan.multiple_up_to == 0);
        CHECK(plan.single == std::vector<std::uint64_t>{4, 6});
        plan = PlanAcks(unsettled, {3, 9});  // a run of one is a plain ack
        CHECK(plan.multiple_up_to == 0);
        CHECK(plan.single == std::vector<std::uint64_t>{3, 9});
        plan = PlanAcks(unsettled, {9, 4, 3, 3});
        CHECK(plan.multiple_up_to == 4);
        CHECK(plan.single == std::vector<std::uint64_t>{9});
    }
    TEST_CASE("A peer that takes the connection but never answers never blocks the loop - the handshake gives up") {
        // A listening socket nobody accepts from: the kernel completes the TCP handshake, and no
        // connection.start ever comes.
        const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(listener >= 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        REQUIRE(::listen(listener, 4) == 0);
        socklen_t length = sizeof address;
        REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);

        RabbitMqSettings settings;
        settings.host = "127.0.0.1";
        settings.port = ntohs(address.sin_port);
        settings.username = settings.password = "guest";
        settings.connection_timeout_seconds = 1;
        EventLoopThread loop_thread;
        std::unique_ptr<RabbitMqTransport> transport;
        const auto begin = std::chrono::steady_clock::now();
        REQUIRE(loop_thread.loop().Invoke([&] {
            transport = std::make_unique<RabbitMqTransport>(loop_thread.loop(), settings, "silent-peer");
            return transport->Start().ok();
        }));
        // While the handshake waits, the loop answers every hand-over at once.
        std::chrono::milliseconds slowest{0};
        while (std::chrono::steady_clock::now() - begin < 800ms) {
            const auto asked = std::chrono::steady_clock::now();
            const auto answered = loop_thread.loop().InvokeFor([] { return true; }, 1000ms);
            REQUIRE(answered.has_value());
            slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::steady_clock::now() - asked));
        }
        CHECK(slowest < 100ms);
        // After the connection timeout the attempt is given up, said why, and retried in the background.
        std::string error;
        CHECK(test_support::WaitFor(
            [&] {
                error = loop_thread.loop().Invoke([&] { return transport->last_error(); });
                return !error.empty();
            },
            5s));
        CHECK_MESSAGE(error.find("no AMQP handshake within 1 s") != std::string::npos, error);
        CHECK_FALSE(loop_thread.loop().Invoke([&] { return transport->IsConnected(); }));
        ::close(listener);
        loop_thread.loop().Invoke([&] { transport.reset(); });
    }
}
