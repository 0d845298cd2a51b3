// Health answers against the real RabbitMQ node: what /health says when a queue loses its leader.
#include <doctest/doctest.h>

#include "Broker/BrokerSupport.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

TEST_SUITE("Broker") {
    TEST_CASE("Quorum: health says degraded while the endpoint's queue member is down - ok once it is back") {
        ScopedVhost vhost;
        BrokerSystem::Options options{.start_inventory = false, .start_payment = false, .start_http = true};
        messaging::SetQuorumQueue(options.queue_arguments, 1);
        options.queue_check_interval_ms = 200;
        BrokerSystem system(vhost, options);
        httplib::Client client("127.0.0.1", system.http_port());
        auto health = [&] {
            auto result = client.Get("/health");
            REQUIRE(result);
            return std::pair{result->status, Json::parse(result->body)};
        };
        REQUIRE(test_support::WaitFor([&] { return health().second["status"] == "ok"; }, 20s));
        CHECK(health().second["endpoints"][0]["consuming"] == true);
        // When OrderService's connection was opened: the same value at the end shows that no check
        // dropped it (a refused check closes its own channel only).
        ManagementApi api;
        auto connected_at = [&] {
            for (const auto& connection : api.Get("vhosts/" + Encode(vhost.name()) + "/connections"))
                if (connection["client_properties"].value("connection_name", "") == "OrderService")
                    return connection.value("connected_at", std::int64_t{0});
            return std::int64_t{0};
        };
        std::int64_t opened = 0;
        REQUIRE(test_support::WaitFor([&] { return (opened = connected_at()) != 0; }, 10s));

        // The broker keeps the consumer and cancels nothing, yet the queue has no leader and delivers nothing.
        SetQuorumMemberRunning(vhost, "order-service", false);
        std::pair<int, Json> down;
        REQUIRE(test_support::WaitFor(
            [&] {
                down = health();
                return down.second["status"] != "ok";
            },
            20s));
        CHECK(down.first == 200);
        CHECK(down.second["status"] == "degraded");
        CHECK(down.second["broker"] == "connected");  // the connection and its other channels stay up
        const Json& endpoint = down.second["endpoints"][0];
        CHECK(endpoint["queue"] == "order-service");
        CHECK(endpoint["consuming"] == false);
        const std::string error = endpoint.value("error", "");
        INFO(error);
        CHECK(error.find("'order-service'") != std::string::npos);
        CHECK(error.find("no leader") != std::string::npos);

        SetQuorumMemberRunning(vhost, "order-service", true);
        REQUIRE(test_support::WaitFor([&] { return health().second["status"] == "ok"; }, 20s));
        CHECK(health().second["endpoints"][0]["consuming"] == true);
        CHECK_FALSE(health().second["endpoints"][0].contains("error"));
        // And it serves again: an order posted now is consumed.
        REQUIRE(PostOrder(client, "quorum-back-1") == 202);
        CHECK(test_support::WaitFor([&] { return OrderStatus(client, "quorum-back-1") == "Submitted"; }, 20s));
    }
}
