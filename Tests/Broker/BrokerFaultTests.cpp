// Against the real RabbitMQ node: the fault path (retries, `_error` and `_skipped` copies, Fault<T>),
// moves to error queues that are deleted or refused at runtime, and quorum queues.
// Each test has a vhost of its own.
#include <doctest/doctest.h>

#include "Broker/BrokerSupport.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

TEST_SUITE("Broker") {
    TEST_CASE(
        "Faults: an id ending in 2 runs 4 attempts then one _error copy and one Fault<ProcessPayment> and the order "
        "fails") {
        ScopedVhost vhost;
        RawAmqpClient tap(vhost.name());
        tap.Tap("payment-tap", {"Contracts:ProcessPayment"});
        tap.Tap("fault-tap", {"MassTransit:Fault--Contracts:ProcessPayment--"});
        BrokerSystem system(vhost, {});
        SubmitOrder(system, "fault-order-2");
        REQUIRE(system.WaitForStatus("fault-order-2", order_service::OrderStatus::kFailed));

        const auto original = tap.Get("payment-tap");
        REQUIRE(original);
        ManagementApi api;
        const auto copy = tap.Get("payment-service_error");
        REQUIRE(copy);
        CHECK_FALSE(tap.Get("payment-service_error", 500ms).has_value());  // exactly one
        CHECK(copy->body == original->body);                               // byte-identical
        CHECK(copy->properties.message_id == original->properties.message_id);
        CHECK(copy->properties.content_type == "application/vnd.masstransit+json");
        CHECK(copy->properties.delivery_mode == 2);
        CHECK(copy->exchange == "payment-service_error");
        CHECK(Header(copy->properties, "MT-Reason") == "fault");
        CHECK(Header(copy->properties, "MT-Fault-ExceptionType") == "payment_service.PaymentGatewayUnavailable");
        CHECK(Header(copy->properties, "MT-Fault-Message") == "Payment gateway unavailable");
        CHECK(Header(copy->properties, "MT-Fault-InputAddress") ==
              "rabbitmq://127.0.0.1:" + std::to_string(BrokerEnvironment::Get().amqp_port) + "/" + vhost.name() +
                  "/payment-service");
        CHECK(Header(copy->properties, "MT-Fault-ConsumerType") == "Payment.ProcessPaymentConsumer");
        CHECK(Header(copy->properties, "MT-Fault-MessageType") == "Contracts.ProcessPayment");
        CHECK(Header(copy->properties, "MT-Fault-RetryCount") == "3");
        CHECK(std::holds_alternative<std::int32_t>(copy->properties.headers.at("MT-Fault-RetryCount")));
        CHECK(ParseIso8601(Header(copy->properties, "MT-Fault-Timestamp")).has_value());
        CHECK(Header(copy->properties, "MT-Fault-StackTrace") != "<missing>");
        for (const char* name : {"MT-Host-MachineName", "MT-Host-ProcessName", "MT-Host-ProcessId", "MT-Host-Assembly",
                                 "MT-Host-AssemblyVersion", "MT-Host-MassTransitVersion", "MT-Host-FrameworkVersion",
                                 "MT-Host-OperatingSystemVersion"})
            CHECK_MESSAGE(std::holds_alternative<std::string>(copy->properties.headers.at(name)), name);

        const auto fault = tap.Get("fault-tap");
        REQUIRE(fault);
        CHECK_FALSE(tap.Get("fault-tap", 500ms).has_value());
        const Json envelope = Json::parse(fault->body);
        CHECK(envelope["messageType"][0] == "urn:message:MassTransit:Fault[[Contracts:ProcessPayment]]");
        CHECK(envelope["message"]["faultedMessageId"] == original->properties.message_id);
        CHECK(envelope["message"]["message"]["orderId"] == "fault-order-2");
        CHECK(system.Order("fault-order-2")->reason == "Payment faulted: Payment gateway unavailable");
        REQUIRE(test_support::WaitFor([&] { return QueuesSettled(api, vhost); }, 20s));
    }

    TEST_CASE(
        "Move: payment-service_error deleted at runtime between suffix-2 orders - each copy lands once - none is "
        "lost") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {});
        RawAmqpClient reader(vhost.name());
        ManagementApi api;
        const std::string error_queue = "payment-service_error";
        std::map<std::string, int> copies;  // order id -> copies read from the error queue
        auto drain = [&] {
            for (const auto& message : reader.Drain(error_queue))
                ++copies[Json::parse(message.body)["message"]["orderId"].get<std::string>()];
        };
        std::vector<std::string> ids;
        auto submit = [&](int from, int to) {
            for (int i = from; i < to; ++i) {
                ids.push_back("move-" + std::to_string(i) + "2");
                SubmitOrder(system, ids.back());
            }
        };
        submit(0, 20);
        REQUIRE(WaitForQueue(vhost, error_queue));
        // Delete the queue once it is empty and no move is on its way: a copy the broker has routed
        // to a queue that is deleted before it arrives is confirmed all the same and gone (seen
        // under ASan), which no publisher can tell. Its exchange stays: a copy published later
        // without `mandatory` would be confirmed and routed nowhere.
        for (int i = 0; i < 20; ++i)
            REQUIRE(system.WaitForStatus("move-" + std::to_string(i) + "2", order_service::OrderStatus::kFailed, 60s));
        REQUIRE(test_support::WaitFor([&] { return QueuesSettled(api, vhost); }, 20s));
        const std::string path = "queues/" + Encode(vhost.name()) + "/" + error_queue + "?if-empty=true";
        REQUIRE(test_support::WaitFor(
            [&] {
                drain();
                return !copies.empty() && api.Delete(path) / 100 == 2;
            },
            20s));
        submit(20, 40);
        for (const auto& id : ids)
            REQUIRE_MESSAGE(system.WaitForStatus(id, order_service::OrderStatus::kFailed, 60s), id);
        REQUIRE(WaitForQueue(vhost, error_queue));
        CHECK(test_support::WaitFor(
            [&] {
                drain();
                return copies.size() == ids.size();
            },
            30s));
        REQUIRE(test_support::WaitFor([&] { return QueuesSettled(api, vhost); }, 20s));
        drain();
        for (const auto& id : ids) CHECK_MESSAGE(copies[id] == 1, id << " has " << copies[id] << " copies");
    }

    TEST_CASE(
        "Request: an answer address this user may not declare - the request faults to _error once - the service "
        "stays up") {
        ScopedVhost vhost;
        // The services' user may configure everything but exchanges named locked-*.
        ManagementApi().Put("permissions/" + Encode(vhost.name()) + "/guest",
                            Json{{"configure", "^(?!locked-).*"}, {"write", ".*"}, {"read", ".*"}});
        BrokerSystem system(vhost, {.start_orders = false, .start_payment = false});
        RawAmqpClient client(vhost.name());
        client.Tap("requester_bus_y", {"requester_bus_y"});
        const std::string base =
            "rabbitmq://127.0.0.1:" + std::to_string(BrokerEnvironment::Get().amqp_port) + "/" + vhost.name() + "/";
        auto request = [&](const std::string& order_id, const std::string& id_suffix, const std::string& address) {
            Json envelope = {{"messageId", "0b4e0000-5a1c-0015-9d3f-08de49a2c" + id_suffix},
                             {"requestId", "0b4e0000-5a1c-0015-1111-08de49a2c" + id_suffix},
                             {"conversationId", "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7"},
                             {"responseAddress", address},
                             {"destinationAddress", "rabbitmq://localhost/inventory-service"},
                             {"messageType", {"urn:message:Contracts:CheckInventory"}},
                             {"message", {{"orderId", order_id}, {"items", Json::array()}}}};
            messaging::MessageProperties properties;
            properties.content_type = "application/vnd.masstransit+json";
            properties.message_id = envelope["messageId"];
            client.Publish("inventory-service", envelope.dump(), properties);
        };
        request("request-3", "4a1", base + "locked-requester?temporary=true");
        // Neither answered nor looped: the request lands in _error once, with the refusal as its fault.
        REQUIRE(WaitForQueue(vhost, "inventory-service_error"));
        const auto copy = client.Get("inventory-service_error", 20s);
        REQUIRE(copy);
        CHECK(copy->properties.message_id == "0b4e0000-5a1c-0015-9d3f-08de49a2c4a1");
        CHECK(Header(copy->properties, "MT-Fault-ExceptionType") == "messaging.PermissionDenied");
        const std::string fault_message = Header(copy->properties, "MT-Fault-Message");
        CHECK(fault_message.find("locked-requester") != std::string::npos);
        CHECK(fault_message.find("403") != std::string::npos);
        CHECK_FALSE(client.Get("inventory-service_error", 1s).has_value());  // exactly one
        CHECK(system.Connected());
        // The service answers other requesters as before, and a second request to the refused address
        // faults at once, without closing a channel.
        request("request-13", "4a2", base + "requester_bus_y?temporary=true");
        const auto answer = client.Get("requester_bus_y", 20s);
        REQUIRE(answer);
        CHECK(Json::parse(answer->body)["message"]["orderId"] == "request-13");
        request("request-23", "4a3", base + "locked-requester?temporary=true");
        const auto second = client.Get("inventory-service_error", 20s);
        REQUIRE(second);
        CHECK(second->properties.message_id == "0b4e0000-5a1c-0015-9d3f-08de49a2c4a3");
        CHECK(system.Connected());
    }

    TEST_CASE("Faults: an unknown message type goes to _skipped - a malformed body to _error - nothing stays unacked") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {});
        RawAmqpClient client(vhost.name());
        messaging::MessageProperties properties;
        properties.content_type = "application/vnd.masstransit+json";
        properties.message_id = "11111111-2222-3333-4444-555555555555";
        const std::string unknown =
            R"({"messageId":"11111111-2222-3333-4444-555555555555","messageType":["urn:message:Contracts:Unheard"],"message":{}})";
        client.Publish("inventory-service", unknown, properties);
        REQUIRE(WaitForQueue(vhost, "inventory-service_skipped"));
        const auto skipped = client.Get("inventory-service_skipped");
        REQUIRE(skipped);
        CHECK(skipped->body == unknown);
        CHECK(Header(skipped->properties, "MT-Reason") == "dead-letter");
        CHECK(Header(skipped->properties, "MT-Host-ProcessName") == "InventoryService");

        client.Publish("order-service", "{definitely not json", properties);
        REQUIRE(WaitForQueue(vhost, "order-service_error"));
        const auto error = client.Get("order-service_error");
        REQUIRE(error);
        CHECK(error->body == "{definitely not json");
        CHECK(Header(error->properties, "MT-Reason") == "fault");
        CHECK(Header(error->properties, "MT-Fault-ExceptionType") == "messaging.EnvelopeError");
        ManagementApi api;
        REQUIRE(test_support::WaitFor([&] { return QueuesSettled(api, vhost); }, 20s));
    }

    TEST_CASE("Quorum: every endpoint on quorum queues - their _error and _skipped queues copy the arguments") {
        ScopedVhost vhost;
        BrokerSystem::Options options;
        messaging::SetQuorumQueue(options.queue_arguments, 1);
        BrokerSystem system(vhost, options);
        ManagementApi api;
        auto queue = [&](const std::string& name) { return api.Get("queues/" + Encode(vhost.name()) + "/" + name); };
        auto check_quorum = [&](const std::string& name) {
            INFO(name);
            const Json q = queue(name);
            CHECK(q["type"] == "quorum");
            CHECK(q["durable"] == true);
            CHECK(q["arguments"] == Json{{"x-queue-type", "quorum"}, {"x-quorum-initial-group-size", 1}});
        };
        for (const char* name : {"order-service", "inventory-service", "payment-service"}) check_quorum(name);

        // The orders still reach their end, and the moves declare quorum _error and _skipped queues.
        SubmitOrder(system, "quorum-2");
        SubmitOrder(system, "quorum-3");
        CHECK(system.WaitForStatus("quorum-3", order_service::OrderStatus::kCompleted));
        CHECK(system.WaitForStatus("quorum-2", order_service::OrderStatus::kFailed));
        RawAmqpClient peer(vhost.name());
        messaging::MessageProperties properties;
        properties.content_type = "application/vnd.masstransit+json";
        peer.Publish("inventory-service",
                     R"({"messageId":"11111111-2222-3333-4444-55555555555a","messageType":["urn:message:X:Unheard"],)"
                     R"("message":{}})",
                     properties);
        REQUIRE(WaitForQueue(vhost, "payment-service_error"));
        REQUIRE(WaitForQueue(vhost, "inventory-service_skipped"));
        check_quorum("payment-service_error");
        check_quorum("inventory-service_skipped");
        const auto moved = peer.Get("payment-service_error");
        REQUIRE(moved);
        CHECK(Json::parse(moved->body)["message"]["orderId"] == "quorum-2");
    }

    TEST_CASE("Quorum: while payment-service_error is down a faulted command stays unacked - then moves once") {
        ScopedVhost vhost;
        BrokerSystem::Options options;
        messaging::SetQuorumQueue(options.queue_arguments, 1);
        BrokerSystem system(vhost, options);
        RawAmqpClient peer(vhost.name());
        auto order_id_of = [](const RawMessage& message) {
            return Json::parse(message.body)["message"]["orderId"].get<std::string>();
        };
        // A first fault declares the _error queue.
        SubmitOrder(system, "qdown-2");
        REQUIRE(WaitForQueue(vhost, "payment-service_error"));
        const auto first = peer.Get("payment-service_error", 20s);
        REQUIRE(first);
        CHECK(order_id_of(*first) == "qdown-2");

        SetQuorumMemberRunning(vhost, "payment-service_error", false);
        SubmitOrder(system, "qdown-12");
        // The fault reaches the saga. The broker neither takes nor refuses the copy while the queue's
        // member is down, so the move waits for its confirm and the command stays unacked in its queue.
        CHECK(system.WaitForStatus("qdown-12", order_service::OrderStatus::kFailed));
        ManagementApi api;
        const std::string payment_queue = "queues/" + Encode(vhost.name()) + "/payment-service";
        CHECK(test_support::WaitFor([&] { return api.Get(payment_queue).value("messages_unacknowledged", 0) == 1; },
                                    20s));
        // The raw client's basic.get makes the broker close its connection (541 noproc): it opens a new
        // one and asks again until its deadline.
        CHECK_THROWS_WITH_AS(peer.Get("payment-service_error", 500ms), doctest::Contains("noproc"), std::runtime_error);

        SetQuorumMemberRunning(vhost, "payment-service_error", true);
        const auto moved = peer.Get("payment-service_error", 20s);
        REQUIRE(moved);
        CHECK(order_id_of(*moved) == "qdown-12");
        CHECK(Header(moved->properties, "MT-Reason") == "fault");
        // Moved once: the command left its queue, and no second copy follows.
        CHECK(test_support::WaitFor([&] { return api.Get(payment_queue).value("messages", -1) == 0; }, 20s));
        CHECK(peer.Drain("payment-service_error").empty());
    }

    TEST_CASE(
        "Quorum: a queue that exists with other arguments is a clear error - the service stays up - no reconnects") {
        ScopedVhost vhost;
        {
            RawAmqpClient operator_tool(vhost.name());
            operator_tool.Tap("order-service", {});  // a classic queue from an earlier deployment
        }
        BrokerSystem::Options options{.start_inventory = false, .start_payment = false, .start_http = true};
        messaging::SetQuorumQueue(options.queue_arguments);
        options.wait_until_settled = false;
        BrokerSystem system(vhost, options);
        httplib::Client client("127.0.0.1", system.http_port());
        Json health;
        REQUIRE(test_support::WaitFor(
            [&] {
                auto result = client.Get("/health");
                if (!result || result->status != 503) return false;
                health = Json::parse(result->body);
                return health["broker"] == "refused";
            },
            20s));
        CHECK(health["status"] == "unhealthy");
        CHECK(health["endpoints"][0]["consuming"] == false);
        const std::string error = health.value("error", "");
        INFO(error);
        CHECK(error.find("'order-service'") != std::string::npos);       // the queue
        CHECK(error.find("x-queue-type: quorum") != std::string::npos);  // what we declare
        CHECK(error.find("but current is none") != std::string::npos);   // what exists: a classic queue has none
        // Stopped for good: no reconnect is scheduled, and a POST stores nothing.
        CHECK_FALSE(system.loop().Invoke([&] { return system.transport(0).IsReconnectScheduled(); }));
        CHECK(PostOrder(client, "refused-1") == 503);
        CHECK(OrderStatus(client, "refused-1") == "<404>");
    }

    TEST_CASE(
        "A refused _error queue holds back only the message that needs it - the service goes on - fixed it moves") {
        ScopedVhost vhost;
        {
            RawAmqpClient operator_tool(vhost.name());
            operator_tool.Tap("order-service_error", {});  // a classic queue from an earlier deployment
        }
        BrokerSystem::Options options{.start_inventory = false, .start_payment = false, .start_http = true};
        messaging::SetQuorumQueue(options.queue_arguments);  // so `order-service_error` is declared quorum
        BrokerSystem system(vhost, options);
        httplib::Client client("127.0.0.1", system.http_port());
        RawAmqpClient peer(vhost.name());
        // A body that is not JSON must move to order-service_error, which cannot be declared as ours.
        messaging::MessageProperties properties;
        properties.message_id = "poison-1";
        properties.content_type = "application/vnd.masstransit+json";
        peer.Publish("order-service", "this is not JSON", properties);
        Json health;
        REQUIRE(test_support::WaitFor(
            [&] {
                auto result = client.Get("/health");
                if (!result || result->status != 200) return false;  // not while it reconnects
                health = Json::parse(result->body);
                return health.contains("refusedQueues");
            },
            20s));
        // Degraded, not down: orders are served, and the refusal names the queue and both argument sets.
        CHECK(health["status"] == "degraded");
        CHECK(health["broker"] == "connected");
        REQUIRE(health["refusedQueues"].size() == 1);
        CHECK(health["refusedQueues"][0]["queue"] == "order-service_error");
        const std::string error = health["refusedQueues"][0].value("error", "");
        INFO(error);
        CHECK(error.find("x-queue-type: quorum") != std::string::npos);  // what we declare
        CHECK(error.find("but current is none") != std::string::npos);   // what exists
        // Everything else goes on: an order is stored and its OrderSubmitted consumed.
        REQUIRE(test_support::WaitFor([&] { return PostOrder(client, "after-refusal-3") == 202; }, 10s));
        CHECK(test_support::WaitFor([&] { return OrderStatus(client, "after-refusal-3") == "Submitted"; }, 20s));
        // The message that needs the queue is not lost: it is still in order-service.
        ManagementApi api;
        const std::string queue_path = "queues/" + Encode(vhost.name()) + "/order-service";
        // (The management API counts a quorum queue's messages only every few seconds.)
        CHECK(test_support::WaitFor([&] { return api.Get(queue_path).value("messages", 0) >= 1; }, 20s));
        // The operator removes the old queue: after its back-off the bus declares it again and the
        // message moves, once.
        CHECK(api.Delete("queues/" + Encode(vhost.name()) + "/order-service_error") / 100 == 2);
        const auto moved = peer.Get("order-service_error", 60s);
        REQUIRE(moved);
        CHECK(moved->properties.message_id == "poison-1");
        CHECK(moved->body == "this is not JSON");
        CHECK(test_support::WaitFor([&] { return api.Get(queue_path).value("messages", -1) == 0; }, 20s));
        CHECK(peer.Drain("order-service_error").empty());
        CHECK(test_support::WaitFor(
            [&] {
                auto result = client.Get("/health");
                return result && result->status == 200 && !Json::parse(result->body).contains("refusedQueues");
            },
            10s));
    }
}
