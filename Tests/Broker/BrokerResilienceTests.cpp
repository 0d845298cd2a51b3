// Against the real RabbitMQ node: HTTP end to end, and what an operator meets: the broker restarting,
// a worker killed with unacked messages, a poison message, SIGTERM under load.
// Each test has a vhost of its own.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "Broker/BrokerSupport.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

TEST_SUITE("Broker") {
    TEST_CASE("End to end over HTTP: ids ending in 0 1 2 and 3 reach their final states") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {.start_http = true});
        httplib::Client client("127.0.0.1", system.http_port());
        // Settled: the broker has answered consume-ok, so health names a live consumer.
        const auto health = SlowestHealth(client, 1).second;
        CHECK(health["status"] == "ok");
        CHECK(health["endpoints"] == Json::parse(R"([{"queue":"order-service","consuming":true}])"));
        for (const char* id : {"http-0", "http-1", "http-2", "http-3"}) {
            auto result = client.Post(
                "/order", std::string(R"({"orderId":")") + id + R"(","customerNumber":"C","totalAmount":"10.00"})",
                "application/json");
            REQUIRE(result);
            CHECK(result->status == 202);
        }
        auto final_state = [&](const char* id) {
            Json order;
            test_support::WaitFor(
                [&] {
                    auto result = client.Get((std::string("/order/") + id).c_str());
                    if (!result || result->status != 200) return false;
                    order = Json::parse(result->body);
                    return order["status"] == "Completed" || order["status"] == "Failed";
                },
                20s);
            return order;
        };
        CHECK(final_state("http-3")["status"] == "Completed");
        CHECK(final_state("http-0")["reason"] == "Out of stock");
        CHECK(final_state("http-1")["reason"] == "Credit card limit exceeded");
        CHECK(final_state("http-2")["reason"] == "Payment faulted: Payment gateway unavailable");
    }

    TEST_CASE("Resilience: the broker restarts while orders flow - every order ends once - none is lost") {
        ScopedVhost vhost;
        RawAmqpClient tap(vhost.name());
        tap.Tap("final-tap", {"Contracts:OrderCompleted", "Contracts:OrderFailed"});
        BrokerSystem system(vhost, {});
        std::vector<std::string> ids;
        for (int i = 0; i < 40; ++i) {
            ids.push_back("restart-" + std::to_string(i) + "3");
            SubmitOrder(system, ids.back());
        }
        RestartBrokerApp(1);
        for (int i = 40; i < 80; ++i) {
            ids.push_back("restart-" + std::to_string(i) + "3");
            // Submitting waits for the reconnect when the broker is still away (503 would be the HTTP answer).
            REQUIRE(system.harness().WaitUntil([&] { return system.Connected(); }, 30s));
            SubmitOrder(system, ids.back());
        }
        for (const auto& id : ids)
            REQUIRE_MESSAGE(system.WaitForStatus(id, order_service::OrderStatus::kCompleted, 60s), id);
        std::map<std::string, std::set<std::string>> finals;  // order -> distinct final message ids
        RawAmqpClient reader(vhost.name());                   // the tap's own connection did not survive the restart
        REQUIRE(test_support::WaitFor(
            [&] {
                for (auto& message : reader.Drain("final-tap")) {
                    const Json envelope = Json::parse(message.body);
                    finals[envelope["message"]["orderId"]].insert(envelope["messageId"]);
                }
                return finals.size() == ids.size();
            },
            30s));
        for (const auto& id : ids)
            CHECK_MESSAGE(finals[id].size() == 1, id << " ended " << finals[id].size() << " times");
    }

    TEST_CASE("Resilience: kill -9 a worker holding unacked messages - after a restart the orders complete") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        BrokerSystem system(vhost, {.start_payment = false});
        auto environment = vhost.SettingsEnvironment();
        environment.push_back("Database__Path=" + dir.File("payments.db"));
        // Each ProcessPayment fails three times 2 s apart before it succeeds: the worker holds it unacked meanwhile.
        environment.push_back(R"(Endpoint__Retry={"Policy":"Interval","Limit":3,"IntervalMs":2000})");
        environment.push_back(R"(Simulation__TransientFailures=[{"Suffix":"5","FailedAttempts":3}])");
        const std::string config = SourceDir() + "/appsettings/PaymentService.json";
        auto worker = std::make_unique<ChildProcess>(PAYMENT_SERVICE_BIN, std::vector<std::string>{"--config", config},
                                                     environment, dir.File("payment-1.log"));
        ManagementApi api;
        auto consumers = [&] {
            try {
                return api.Get("queues/" + Encode(vhost.name()) + "/payment-service").value("consumers", 0);
            } catch (const std::exception&) {
                return 0;  // not declared yet
            }
        };
        REQUIRE(test_support::WaitFor([&] { return consumers() == 1; }, 30s));
        std::vector<std::string> ids;
        for (int i = 0; i < 5; ++i) {
            ids.push_back("kill-" + std::to_string(i) + "5");
            SubmitOrder(system, ids.back());
        }
        // The worker holds the ProcessPayment deliveries unacked while it waits to retry them.
        REQUIRE(test_support::WaitFor(
            [&] {
                const Json queue = api.Get("queues/" + Encode(vhost.name()) + "/payment-service");
                return queue.value("messages_unacknowledged", 0) == 5;
            },
            30s));
        worker->Signal(SIGKILL);
        CHECK(worker->Wait(10s) == -SIGKILL);
        worker = std::make_unique<ChildProcess>(PAYMENT_SERVICE_BIN, std::vector<std::string>{"--config", config},
                                                environment, dir.File("payment-2.log"));
        for (const auto& id : ids)
            REQUIRE_MESSAGE(system.WaitForStatus(id, order_service::OrderStatus::kCompleted, 60s), id);
        worker->Signal(SIGTERM);
        CHECK(worker->Wait(10s) == 0);
    }

    TEST_CASE(
        "Poison: a ProcessPayment that ends the worker every time faults to _error past RedeliveryLimit - "
        "the payments queued behind it are not blamed") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        RawAmqpClient tap(vhost.name());
        BrokerSystem system(vhost, {.start_payment = false});
        auto environment = vhost.SettingsEnvironment();
        environment.push_back("Database__Path=" + dir.File("payments.db"));
        environment.push_back("Endpoint__RedeliveryLimit=2");
        environment.push_back("Simulation__CrashSuffixes=9");
        const std::string config = SourceDir() + "/appsettings/PaymentService.json";
        int runs = 0;
        auto start_worker = [&] {
            ++runs;
            return std::make_unique<ChildProcess>(PAYMENT_SERVICE_BIN, std::vector<std::string>{"--config", config},
                                                  environment, dir.File("payment-" + std::to_string(runs) + ".log"));
        };
        ManagementApi api;
        // The worker's queue as the management API lists it; empty until the worker declared it.
        auto payment_queue = [&]() -> Json {
            for (const auto& queue : api.Get("queues/" + Encode(vhost.name())))
                if (queue["name"] == "payment-service") return queue;
            return Json::object();
        };
        // A first run declares the worker's queue and stops: the payments then wait in it, the poison
        // first, so that the next run takes them all in one prefetch and ends on the poison with the
        // others unsettled behind it.
        auto worker = start_worker();
        REQUIRE(test_support::WaitFor([&] { return payment_queue().value("consumers", 0) == 1; }, 30s));
        worker->Signal(SIGTERM);
        REQUIRE(worker->Wait(10s) == 0);
        SubmitOrder(system, "poison-9");
        REQUIRE(test_support::WaitFor([&] { return payment_queue().value("messages_ready", 0) == 1; }, 30s));
        const std::vector<std::string> innocents = {"behind-13", "behind-23", "behind-33"};
        for (const auto& id : innocents) SubmitOrder(system, id);
        REQUIRE(test_support::WaitFor([&] { return payment_queue().value("messages_ready", 0) == 4; }, 30s));
        worker = start_worker();
        auto failed = [&] {
            const auto order = system.Order("poison-9");
            return order && order->status == order_service::OrderStatus::kFailed;
        };
        // Each run that ends is a crash on the poison message: start the worker again, as systemd would.
        int crashes = 0;
        while (crashes < 6) {
            std::optional<int> exit_code;
            REQUIRE(test_support::WaitFor(
                [&] {
                    exit_code = worker->Wait(0ms);
                    return exit_code.has_value() || failed();
                },
                60s));
            if (!exit_code) break;
            CHECK(*exit_code == -SIGABRT);
            ++crashes;
            worker = start_worker();
        }
        // Limit 2: the first delivery and two returns end the process; the third return faults.
        CHECK(crashes == 3);
        REQUIRE(system.WaitForStatus("poison-9", order_service::OrderStatus::kFailed, 60s));
        CHECK(system.Order("poison-9")->reason.find("running when the process ended, 3 times") != std::string::npos);
        // The payments that came back with it after the first crash were not counted: all are paid.
        for (const auto& id : innocents)
            CHECK_MESSAGE(system.WaitForStatus(id, order_service::OrderStatus::kCompleted, 60s), id);
        // The worker now stays up and pays the next order.
        SubmitOrder(system, "healthy-3");
        REQUIRE(system.WaitForStatus("healthy-3", order_service::OrderStatus::kCompleted, 60s));
        const auto copy = tap.Get("payment-service_error");
        REQUIRE(copy);
        CHECK(Header(copy->properties, "MT-Fault-ExceptionType") == "messaging.RedeliveryLimitExceeded");
        CHECK(Header(copy->properties, "MT-Redelivery-Count") == "2");
        CHECK_FALSE(tap.Get("payment-service_error", 500ms).has_value());
        REQUIRE(test_support::WaitFor([&] { return QueuesSettled(api, vhost); }, 20s));
        // The listing's counts trail the queue by a statistics interval.
        CHECK(test_support::WaitFor([&] { return payment_queue().value("messages", -1) == 0; }, 20s));
        worker->Signal(SIGTERM);
        CHECK(worker->Wait(10s) == 0);
    }

    TEST_CASE("Resilience: SIGTERM under load exits 0 within 10 s and loses no accepted order") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        BrokerSystem workers(vhost, {.start_orders = false});  // inventory and payment only
        auto environment = vhost.SettingsEnvironment();
        environment.push_back("Database__Path=" + dir.File("orders.db"));
        environment.push_back("Http__Port=0");
        environment.push_back("Endpoint__Queue=order-service-2");
        const std::string config = SourceDir() + "/appsettings/OrderService.json";
        // Port 0 picks a free port; read it back from the log.
        auto service = std::make_unique<ChildProcess>(ORDER_SERVICE_BIN, std::vector<std::string>{"--config", config},
                                                      environment, dir.File("order-1.log"));
        auto port_from_log = [&](const std::string& log) {
            int port = 0;
            test_support::WaitFor(
                [&] {
                    std::ifstream in(log);
                    std::string line;
                    while (std::getline(in, line))
                        if (auto at = line.find("listening on http://0.0.0.0:"); at != std::string::npos)
                            port = std::atoi(line.c_str() + at + 28);
                    return port > 0;
                },
                20s);
            return port;
        };
        const int port = port_from_log(dir.File("order-1.log"));
        REQUIRE(port > 0);
        std::atomic<bool> stop{false};
        std::mutex mutex;
        std::vector<std::string> accepted;
        std::thread load([&] {
            httplib::Client client("127.0.0.1", port);
            client.set_read_timeout(10, 0);
            for (int i = 0; !stop && i < 100000; ++i) {
                const std::string id = "term-" + std::to_string(i) + "3";
                auto result =
                    client.Post("/order", R"({"orderId":")" + id + R"(","customerNumber":"C","totalAmount":"1.00"})",
                                "application/json");
                if (result && result->status == 202) {
                    std::lock_guard lock(mutex);
                    accepted.push_back(id);
                }
                if (!result) break;  // the server has gone
            }
        });
        REQUIRE(test_support::WaitFor(
            [&] {
                std::lock_guard lock(mutex);
                return accepted.size() >= 50;
            },
            30s));
        const auto signalled = std::chrono::steady_clock::now();
        service->Signal(SIGTERM);
        const auto code = service->Wait(10s);
        stop = true;
        load.join();
        REQUIRE(code.has_value());
        CHECK(*code == 0);
        CHECK(std::chrono::steady_clock::now() - signalled < 10s);
        // Start it again on the same database: every accepted order reaches its final state.
        service = std::make_unique<ChildProcess>(ORDER_SERVICE_BIN, std::vector<std::string>{"--config", config},
                                                 environment, dir.File("order-2.log"));
        const int port2 = port_from_log(dir.File("order-2.log"));
        REQUIRE(port2 > 0);
        httplib::Client client("127.0.0.1", port2);
        for (const auto& id : accepted) {
            const bool done = test_support::WaitFor(
                [&] {
                    auto result = client.Get(("/order/" + id).c_str());
                    return result && result->status == 200 && Json::parse(result->body)["status"] == "Completed";
                },
                60s);
            CHECK_MESSAGE(done, id << " did not complete");
        }
        service->Signal(SIGTERM);
        CHECK(service->Wait(10s) == 0);
    }
}
