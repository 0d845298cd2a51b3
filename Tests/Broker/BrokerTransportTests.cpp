// Against the real RabbitMQ node: how the transport uses channels, deliveries that arrive beside RPC
// replies, a stalled broker, and a memory alarm that blocks publishing.
// Each test has a vhost of its own.
#include <doctest/doctest.h>

#include <atomic>

#include "Broker/BrokerSupport.h"
#include "Support/MetricsText.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

namespace {

// A transport belongs to its loop thread: it is closed there, also when a REQUIRE fails.
struct CloseOnLoop {
    messaging::EventLoop& loop;
    std::unique_ptr<messaging::RabbitMqTransport>& transport;
    ~CloseOnLoop() {
        loop.Invoke([this] { transport.reset(); });
    }
};

}  // namespace

TEST_SUITE("Broker") {
    TEST_CASE(
        "Channels: each service consumes and acks on one channel - publishes with confirms on another - checks its "
        "queues on a third") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {});
        SubmitOrder(system, "channels-3");
        REQUIRE(system.WaitForStatus("channels-3", order_service::OrderStatus::kCompleted, 20s));

        // A connection as expected: a channel with consumers and no confirms that publishes nothing,
        // a channel in confirm mode without consumers that published, and the queue check's channel
        // with neither (it opens at the first check, a few seconds after the connection).
        auto split_as_expected = [](const std::vector<Json>& channels) {
            if (channels.size() != 3) return false;
            int consuming = 0;
            int publishing = 0;
            int checking = 0;
            for (const auto& channel : channels) {
                const int consumers = channel.value("consumer_count", 0);
                const int published = channel.value("message_stats", Json::object()).value("publish", 0);
                const bool confirm = channel.value("confirm", false);
                consuming += consumers >= 1 && !confirm && published == 0;
                publishing += consumers == 0 && confirm && published >= 1;
                checking += consumers == 0 && !confirm && published == 0;
            }
            return consuming == 1 && publishing == 1 && checking == 1;
        };
        ManagementApi api;
        std::map<std::string, std::vector<Json>> channels_by_connection;
        // The management API's figures lag by up to a statistics interval.
        test_support::WaitFor(
            [&] {
                channels_by_connection.clear();
                for (const auto& channel : api.Get("vhosts/" + Encode(vhost.name()) + "/channels")) {
                    // A channel whose connection is closing has no connection details (an empty array).
                    const Json& details = channel["connection_details"];
                    if (!details.is_object()) return false;
                    channels_by_connection[details["name"].get<std::string>()].push_back(channel);
                }
                if (channels_by_connection.size() != 3) return false;
                for (const auto& [connection, channels] : channels_by_connection)
                    if (!split_as_expected(channels)) return false;
                return true;
            },
            20s);
        CHECK(channels_by_connection.size() == 3);
        for (const auto& [connection, channels] : channels_by_connection)
            CHECK_MESSAGE(split_as_expected(channels), connection << ": " << Json(channels).dump());
    }

    TEST_CASE("Transport: deliveries that arrive with the reply to a runtime RPC are handled without more traffic") {
        // basic.consume on a queue that holds messages: the broker sends consume-ok and the first
        // deliveries close together, and when one read gets both, rabbitmq-c keeps what follows the
        // reply in its own buffers, where the socket's readiness no longer announces it. With
        // heartbeats off nothing else reads the socket, so those deliveries must be picked up because
        // of the RPC itself. One read holds both only now and then, so the test starts many consumers.
        ScopedVhost vhost;
        constexpr int kQueues = 30;
        constexpr int kMessagesEach = 10;
        auto queue_name = [](int i) { return "buffered-by-rpc-" + std::to_string(i); };
        {
            RawAmqpClient raw(vhost.name());
            for (int q = 0; q < kQueues; ++q) {
                raw.Tap(queue_name(q), {"BufferedByRpc" + std::to_string(q)});
                for (int i = 0; i < kMessagesEach; ++i)
                    raw.Publish("BufferedByRpc" + std::to_string(q), "message " + std::to_string(i), {});
            }
        }
        ManagementApi api;
        REQUIRE(test_support::WaitFor(
            [&] {
                int ready = 0;
                for (const auto& queue : api.Get("queues/" + Encode(vhost.name())))
                    ready += queue.value("messages_ready", 0);
                return ready == kQueues * kMessagesEach;
            },
            20s));

        messaging::RabbitMqSettings settings = vhost.Settings();
        settings.heartbeat_seconds = 0;
        messaging::EventLoopThread loop_thread;
        std::unique_ptr<messaging::RabbitMqTransport> transport;
        CloseOnLoop close_on_loop{loop_thread.loop(), transport};
        REQUIRE(loop_thread.loop().Invoke([&] {
            transport = std::make_unique<messaging::RabbitMqTransport>(loop_thread.loop(), settings, "rpc-test");
            return transport->Start().ok();
        }));
        std::atomic<int> received{0};
        for (int q = 0; q < kQueues; ++q) {
            // Posted: the consumer starts from the loop's work queue, not inside a socket callback.
            loop_thread.loop().Post([&, q] {
                transport->Consume(queue_name(q), kMessagesEach, [&](messaging::Delivery delivery) {
                    transport->Ack(delivery);
                    ++received;
                });
            });
            const int expected = (q + 1) * kMessagesEach;
            REQUIRE_MESSAGE(test_support::WaitFor([&] { return received.load() == expected; }, 5s),
                            "consumer " << q << ": " << received.load() << " of " << expected << " deliveries");
        }
    }

    TEST_CASE("Cluster nodes: each attempt goes to the next node - a dead one costs one try - a lost node is left") {
        ScopedVhost vhost;
        RawAmqpClient raw(vhost.name());
        raw.Tap("failover", {"Failover"});
        // Three nodes as RabbitMQ.Hosts lists them: nobody listens on the first; the second is a relay
        // to the broker that the test takes away; the third is the broker itself.
        const int dead = FreePort();
        auto relay = std::make_unique<AmqpProxy>();
        const int relayed = relay->port();
        const int direct = BrokerEnvironment::Get().amqp_port;
        messaging::RabbitMqSettings settings = vhost.Settings();
        settings.hosts = {"127.0.0.1:" + std::to_string(dead), "127.0.0.1:" + std::to_string(relayed),
                          "127.0.0.1:" + std::to_string(direct)};
        messaging::EventLoopThread loop_thread;
        std::unique_ptr<messaging::RabbitMqTransport> transport;
        CloseOnLoop close_on_loop{loop_thread.loop(), transport};
        std::atomic<int> received{0};
        REQUIRE(loop_thread.loop().Invoke([&] {
            transport = std::make_unique<messaging::RabbitMqTransport>(loop_thread.loop(), settings, "cluster-test");
            if (!transport->Start().ok()) return false;
            transport->Consume("failover", 10, [&](messaging::Delivery delivery) {
                transport->Ack(delivery);
                ++received;
            });
            return true;
        }));
        auto connected_port = [&] {
            return loop_thread.loop().Invoke([&] { return transport->IsSettled() ? transport->node().port : 0; });
        };
        // The refused first node costs one attempt; the second one is connected to.
        REQUIRE(test_support::WaitFor([&] { return connected_port() == relayed; }, 10s));
        raw.Publish("Failover", "through the relay", {});
        REQUIRE(test_support::WaitFor([&] { return received.load() == 1; }, 10s));

        // The node goes away: the transport moves on to the next node, not back to the dead one, and
        // its consumer resumes there.
        relay.reset();
        CHECK(test_support::WaitFor([&] { return connected_port() == direct; }, 10s));
        raw.Publish("Failover", "straight to the broker", {});
        CHECK(test_support::WaitFor([&] { return received.load() == 2; }, 10s));
    }

    TEST_CASE("Transport: a broker stalled in the middle of a delivery never blocks the loop") {
        ScopedVhost vhost;
        AmqpProxy proxy;
        BrokerSystem system(vhost, {.start_http = true, .order_service_amqp_port = proxy.port()});
        httplib::Client client("127.0.0.1", system.http_port());
        client.set_read_timeout(5, 0);
        // The saga consumes the OrderSubmitted it publishes: that delivery to OrderService stops after
        // three bytes of its content header.
        proxy.HoldInsideNextDelivery();
        REQUIRE(PostOrder(client, "stall-3") == 202);
        REQUIRE(test_support::WaitFor([&] { return proxy.holding(); }, 10s));

        const auto [slowest, health] = SlowestHealth(client, 20);
        CHECK_MESSAGE(slowest < 100ms, "slowest GET /health: " << slowest.count() << " ms");
        CHECK(health["broker"] == "connected");
        // Orders are still taken while the delivery waits for the rest of its frames.
        CHECK(PostOrder(client, "stall-13") == 202);
        CHECK(OrderStatus(client, "stall-13") == "Accepted");

        proxy.Release();
        CHECK(test_support::WaitFor([&] { return OrderStatus(client, "stall-3") == "Completed"; }, 20s));
        CHECK(test_support::WaitFor([&] { return OrderStatus(client, "stall-13") == "Completed"; }, 20s));
    }

    TEST_CASE("Alarm: while the broker blocks publishing health answers at once - every 202 is stored and completes") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {.start_http = true});
        httplib::Client client("127.0.0.1", system.http_port());
        client.set_read_timeout(5, 0);
        // Cleared whatever happens: the node is shared by the tests that follow.
        struct AlarmOff {
            ~AlarmOff() { SetMemoryAlarm(false); }
        } alarm_off;
        SetMemoryAlarm(true);

        // The broker blocks a connection when it publishes: the first order is stored, answered 202,
        // and its OrderSubmitted waits in the outbox and the socket.
        CHECK(PostOrder(client, "alarm-3") == 202);
        CHECK(test_support::WaitFor(
            [&] {
                return system.loop().Invoke([&] { return system.orders().bus().transport().IsPublishingBlocked(); });
            },
            10s));
        const auto [slowest, health] = SlowestHealth(client, 20);
        CHECK_MESSAGE(slowest < 100ms, "slowest GET /health: " << slowest.count() << " ms");
        CHECK(health["status"] == "degraded");
        CHECK(health["broker"] == "blocked");
        // /metrics says so too, and counts the time blocked.
        auto metrics_text = [&] {
            auto scrape = client.Get("/metrics");
            return scrape && scrape->status == 200 ? scrape->body : std::string();
        };
        const std::string while_blocked = metrics_text();
        CHECK(test_support::SampleSum(while_blocked, "bus_broker_state", {{"state", "blocked"}}) == 1);
        CHECK(test_support::SampleSum(while_blocked, "bus_broker_blocked_seconds_total") > 0);
        for (const char* id : {"alarm-13", "alarm-23"}) {
            const auto asked = std::chrono::steady_clock::now();
            CHECK(PostOrder(client, id) == 202);
            CHECK(std::chrono::steady_clock::now() - asked < 1s);
            CHECK(OrderStatus(client, id) == "Accepted");
        }

        SetMemoryAlarm(false);
        for (const char* id : {"alarm-3", "alarm-13", "alarm-23"})
            CHECK_MESSAGE(test_support::WaitFor([&] { return OrderStatus(client, id) == "Completed"; }, 30s), id);
        CHECK(test_support::WaitFor(
            [&] {
                return !system.loop().Invoke([&] { return system.orders().bus().transport().IsPublishingBlocked(); });
            },
            10s));
        CHECK(SlowestHealth(client, 1).second["status"] == "ok");
        // The block is over: its time is counted and no longer grows.
        const double blocked = test_support::SampleSum(metrics_text(), "bus_broker_blocked_seconds_total");
        CHECK(blocked >= test_support::SampleSum(while_blocked, "bus_broker_blocked_seconds_total"));
        CHECK(test_support::SampleSum(metrics_text(), "bus_broker_blocked_seconds_total") == blocked);
    }
}
