// Health answers against the real RabbitMQ node: what /health, /health/live and /health/ready say
// when a queue loses its leader, and on a worker's admin port while it consumes and once the broker
// refuses its queue.
#include <doctest/doctest.h>

#include <csignal>
#include <fstream>

#include "Broker/BrokerSupport.h"
#include "Support/MetricsText.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

namespace {

// PaymentService as a child process with its admin listener on `admin_port`.
std::unique_ptr<ChildProcess> StartPaymentWorker(const ScopedVhost& vhost, const test_support::TempDir& dir,
                                                 int admin_port, std::vector<std::string> extra = {}) {
    auto environment = vhost.SettingsEnvironment();
    environment.push_back("Database__Path=" + dir.File("payments.db"));
    environment.push_back("Admin__Port=" + std::to_string(admin_port));
    environment.insert(environment.end(), extra.begin(), extra.end());
    const std::string config = SourceDir() + "/appsettings/PaymentService.json";
    return std::make_unique<ChildProcess>(PAYMENT_SERVICE_BIN, std::vector<std::string>{"--config", config},
                                          environment, dir.File("payment.log"));
}

// The status and JSON body of GET `path`; status 0 while nothing answers.
std::pair<int, Json> Get(httplib::Client& client, const std::string& path) {
    auto result = client.Get(path);
    if (!result) return {0, Json()};
    return {result->status, Json::parse(result->body)};
}

}  // namespace

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

    TEST_CASE("A worker answers /health - /health/live and /health/ready on its admin port - ready once it consumes") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        const int admin_port = FreePort();
        auto worker = StartPaymentWorker(vhost, dir, admin_port);
        httplib::Client client("127.0.0.1", admin_port);
        REQUIRE(test_support::WaitFor([&] { return Get(client, "/health/ready").first == 200; }, 30s));
        CHECK(Get(client, "/health/ready").second == Json::parse(R"({"status":"ready"})"));
        CHECK(Get(client, "/health/live") == std::pair{200, Json::parse(R"({"status":"live"})")});
        // Its metrics too, with the process's figures, as a Prometheus server scrapes them.
        auto scrape = client.Get("/metrics");
        REQUIRE(scrape);
        CHECK(scrape->status == 200);
        CHECK(scrape->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
        CHECK(test_support::SampleSum(scrape->body, "process_resident_memory_bytes") > 0);
        CHECK(test_support::SampleSum(scrape->body, "process_open_fds") > 0);
        const auto [status, health] = Get(client, "/health");
        CHECK(status == 200);
        CHECK(health == Json::parse(R"({"status":"ok","broker":"connected",
                                         "database":{"provider":"sqlite","state":"ok"},
                                         "endpoints":[{"queue":"payment-service","consuming":true}]})"));
        CHECK(test_support::SampleSum(scrape->body, "db_state",
                                      {{"provider", "sqlite"}, {"service", "PaymentService"}, {"state", "ok"}}) == 1);
        // Only the health and metrics answers are served there, in the services' error shape.
        auto post = client.Post("/health", "", "application/json");
        REQUIRE(post);
        CHECK(post->status == 405);
        CHECK(Json::parse(post->body)["error"] == "method_not_allowed");
        CHECK(Get(client, "/order/x").first == 404);

        // Stopping: the port closes with the worker, which exits cleanly.
        worker->Signal(SIGTERM);
        CHECK(worker->Wait(20s) == 0);
        CHECK(Get(client, "/health/live").first == 0);
    }

    TEST_CASE("A worker with Logging.Format Json writes every line as one JSON object naming the service") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        const int admin_port = FreePort();
        auto worker = StartPaymentWorker(vhost, dir, admin_port, {"Logging__Format=Json"});
        httplib::Client client("127.0.0.1", admin_port);
        REQUIRE(test_support::WaitFor([&] { return Get(client, "/health/ready").first == 200; }, 30s));
        worker->Signal(SIGTERM);
        REQUIRE(worker->Wait(20s) == 0);
        std::ifstream log(dir.File("payment.log"));
        int lines = 0;
        for (std::string line; std::getline(log, line);) {
            if (line.empty()) continue;
            ++lines;
            INFO(line);
            const Json entry = Json::parse(line, nullptr, false);
            REQUIRE(entry.is_object());
            CHECK(entry["service"] == "PaymentService");
            CHECK(entry.contains("time"));
            CHECK(entry.contains("level"));
            CHECK(entry.contains("message"));
        }
        CHECK(lines >= 2);  // at least the start and the clean stop
    }

    TEST_CASE("A worker whose queue the broker refuses says so on its admin port - 503 and not ready") {
        ScopedVhost vhost;
        {
            RawAmqpClient operator_tool(vhost.name());
            operator_tool.Tap("payment-service", {});  // a classic queue from an earlier deployment
        }
        test_support::TempDir dir;
        const int admin_port = FreePort();
        auto worker = StartPaymentWorker(vhost, dir, admin_port, {"Endpoint__QueueType=Quorum"});
        httplib::Client client("127.0.0.1", admin_port);
        std::pair<int, Json> health;
        REQUIRE(test_support::WaitFor(
            [&] {
                health = Get(client, "/health");
                return health.first == 503 && health.second["broker"] == "refused";
            },
            30s));
        CHECK(health.second["status"] == "unhealthy");
        CHECK(health.second["endpoints"] == Json::parse(R"([{"queue":"payment-service","consuming":false}])"));
        const std::string error = health.second.value("error", "");
        INFO(error);
        CHECK(error.find("'payment-service'") != std::string::npos);
        CHECK(error.find("x-queue-type: quorum") != std::string::npos);
        const auto ready = Get(client, "/health/ready");
        CHECK(ready.first == 503);
        CHECK(ready.second["status"] == "not ready");
        CHECK(ready.second.value("reason", "") == "the broker is refused");
        // Alive all the same: the loop answers, so a liveness probe does not restart it into the same refusal.
        CHECK(Get(client, "/health/live").first == 200);
    }
}
