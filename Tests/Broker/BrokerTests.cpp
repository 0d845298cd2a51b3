// Tests against the real RabbitMQ node that scripts/test.sh starts. Each test has a vhost of its own.
// They check the topology through the management API, the AMQP properties and envelopes on the
// wire, interop with hand-made .NET-style messages, the fault path, HTTP end to end, and resilience.
#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <set>
#include <thread>

#include "Broker/BrokerSupport.h"
#include "Support/MetricsText.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kMessageNames = {
    "OrderSubmitted", "CheckInventory",      "StockReserved",  "StockShortage", "ProcessPayment", "PaymentAccepted",
    "PaymentFailed",  "OrderTimeoutExpired", "OrderCompleted", "OrderFailed",   "ReleaseStock",   "StockReleased"};

std::string Header(const messaging::MessageProperties& properties, const std::string& name) {
    const auto* value = messaging::FindHeader(properties.headers, name);
    return value ? messaging::HeaderToString(*value) : "<missing>";
}

void SubmitOrder(BrokerSystem& system, const std::string& id, const std::string& amount = "149.97") {
    auto done = std::make_shared<std::promise<order_service::SubmitOutcome>>();
    auto future = done->get_future();
    system.loop().Post([&system, id, amount, done] {
        order_service::NewOrder order{contracts::OrderId::Parse(id).value(),
                                      "CUST-7",
                                      *Decimal::Parse(amount),
                                      {{"SKU-1", 1, *Decimal::Parse(amount)}}};
        system.orders().submission().Submit(order, messaging::TraceContext::NewRoot(),
                                            [done](order_service::SubmitOutcome outcome) { done->set_value(outcome); });
    });
    REQUIRE(future.get() == order_service::SubmitOutcome::kAccepted);
}

bool QueuesSettled(ManagementApi& api, const ScopedVhost& vhost) {
    const Json queues = api.Get("queues/" + Encode(vhost.name()));
    for (const auto& queue : queues)
        if (queue.value("messages_unacknowledged", 0) != 0) return false;
    return true;
}

// The longest of `count` GET /health answers, and the body of the last one.
std::pair<std::chrono::milliseconds, Json> SlowestHealth(httplib::Client& client, int count) {
    std::chrono::milliseconds slowest{0};
    Json body;
    for (int i = 0; i < count; ++i) {
        const auto asked = std::chrono::steady_clock::now();
        auto result = client.Get("/health");
        const auto took =
            std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked);
        if (!result) return {std::chrono::milliseconds::max(), Json()};
        slowest = std::max(slowest, took);
        body = Json::parse(result->body);
    }
    return {slowest, body};
}

}  // namespace

TEST_SUITE("Broker") {
    TEST_CASE("Topology: exchanges - queues and bindings exactly as MassTransit declares them at start") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {});
        ManagementApi api;
        const std::string v = Encode(vhost.name());

        std::map<std::string, Json> exchanges;
        for (const auto& exchange : api.Get("exchanges/" + v))
            exchanges[exchange["name"].get<std::string>()] = exchange;
        std::vector<std::string> expected_exchanges;
        for (const auto& name : kMessageNames) expected_exchanges.push_back("Contracts:" + name);
        for (const char* queue : {"order-service", "inventory-service", "payment-service"})
            expected_exchanges.push_back(queue);
        // The faults order-service consumes; no fault has been published yet.
        for (const char* faulted : {"CheckInventory", "ProcessPayment"})
            expected_exchanges.push_back(std::string("MassTransit:Fault--Contracts:") + faulted + "--");
        for (const auto& name : expected_exchanges) {
            REQUIRE_MESSAGE(exchanges.count(name), "missing exchange " << name);
            const Json& exchange = exchanges[name];
            CHECK_MESSAGE(exchange["type"] == "fanout", name);
            CHECK_MESSAGE(exchange["durable"] == true, name);
            CHECK_MESSAGE(exchange["auto_delete"] == false, name);
            CHECK_MESSAGE(exchange["internal"] == false, name);
            CHECK_MESSAGE(exchange["arguments"] == Json::object(), name);
        }

        std::map<std::string, Json> queues;
        for (const auto& queue : api.Get("queues/" + v)) queues[queue["name"].get<std::string>()] = queue;
        // _error and _skipped, and the exchanges of published faults, come with their first use, as
        // MassTransit declares them (the twin's differential test checks that they then match).
        CHECK(queues.size() == 3);
        CHECK_FALSE(exchanges.count("MassTransit:Fault"));
        for (const char* queue : {"order-service", "inventory-service", "payment-service"}) {
            const std::string name = queue;
            REQUIRE_MESSAGE(queues.count(name), "missing queue " << name);
            CHECK(queues[name]["durable"] == true);
            CHECK(queues[name]["auto_delete"] == false);
            CHECK(queues[name]["exclusive"] == false);
            CHECK_MESSAGE(queues[name]["arguments"] == Json::object(), name);
            CHECK_FALSE(exchanges.count(name + "_error"));
            CHECK_FALSE(exchanges.count(name + "_skipped"));
        }

        std::set<std::tuple<std::string, std::string, std::string>> bindings;  // source, destination, type
        for (const auto& binding : api.Get("bindings/" + v)) {
            if (binding["source"] == "") continue;  // the default exchange
            CHECK(binding["routing_key"] == "");
            CHECK(binding["arguments"] == Json::object());
            bindings.insert(std::make_tuple(binding["source"].get<std::string>(),
                                            binding["destination"].get<std::string>(),
                                            binding["destination_type"].get<std::string>()));
        }
        for (const char* queue : {"order-service", "inventory-service", "payment-service"})
            CHECK_MESSAGE(bindings.count({queue, queue, "queue"}),
                          "missing binding " << queue << " -> queue " << queue);
        const std::vector<std::pair<std::string, std::string>> consumed = {
            {"OrderSubmitted", "order-service"},   {"StockReserved", "order-service"},
            {"StockShortage", "order-service"},    {"PaymentAccepted", "order-service"},
            {"PaymentFailed", "order-service"},    {"OrderTimeoutExpired", "order-service"},
            {"StockReleased", "order-service"},    {"CheckInventory", "inventory-service"},
            {"ReleaseStock", "inventory-service"}, {"ProcessPayment", "payment-service"}};
        for (const auto& [message, queue] : consumed)
            CHECK_MESSAGE(bindings.count({"Contracts:" + message, queue, "exchange"}), message << " -> " << queue);
        for (const char* faulted : {"CheckInventory", "ProcessPayment"}) {
            const std::string exchange = std::string("MassTransit:Fault--Contracts:") + faulted + "--";
            CHECK(bindings.count({exchange, "order-service", "exchange"}));
            CHECK_FALSE(bindings.count({exchange, "MassTransit:Fault", "exchange"}));
        }
        // A .NET peer declaring the same names with MassTransit's flags does not fail.
        RawAmqpClient peer(vhost.name());
        peer.Tap("order-service", {"Contracts:OrderSubmitted", "order-service"});
    }

    TEST_CASE("Wire: AMQP properties and every envelope field as a MassTransit peer expects") {
        ScopedVhost vhost;
        RawAmqpClient tap(vhost.name());
        std::vector<std::string> exchanges;
        for (const auto& name : kMessageNames) exchanges.push_back("Contracts:" + name);
        tap.Tap("wire-tap", exchanges);
        BrokerSystem system(vhost, {});
        const std::string id = "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e33";
        SubmitOrder(system, id, "24.50");
        REQUIRE(system.WaitForStatus(id, order_service::OrderStatus::kCompleted));

        std::map<std::string, RawMessage> seen;  // by first URN
        REQUIRE(test_support::WaitFor(
            [&] {
                for (auto& message : tap.Drain("wire-tap")) seen[Json::parse(message.body)["messageType"][0]] = message;
                return seen.count("urn:message:Contracts:OrderCompleted") > 0;
            },
            20s));
        for (const char* name : {"OrderSubmitted", "CheckInventory", "StockReserved", "ProcessPayment",
                                 "PaymentAccepted", "OrderCompleted"}) {
            const std::string urn = std::string("urn:message:Contracts:") + name;
            REQUIRE_MESSAGE(seen.count(urn), "not seen: " << name);
            const RawMessage& raw = seen[urn];
            const Json envelope = Json::parse(raw.body);
            CHECK(raw.exchange == std::string("Contracts:") + name);
            CHECK(raw.routing_key == "");
            CHECK(raw.properties.content_type == "application/vnd.masstransit+json");
            CHECK(raw.properties.delivery_mode == 2);
            CHECK(raw.properties.message_id == envelope["messageId"]);
            // As MassTransit: no correlationId (our contracts have no Guid CorrelationId); what the saga
            // publishes has its CorrelationId (the order id, a GUID here) as initiatorId.
            CHECK(raw.properties.correlation_id.empty());
            CHECK(Guid::Parse(envelope["messageId"].get<std::string>())->ToString() == envelope["messageId"]);
            CHECK(Guid::Parse(envelope["conversationId"].get<std::string>()).has_value());
            CHECK(envelope["correlationId"].is_null());
            const bool from_saga = std::string(name) == "CheckInventory" || std::string(name) == "ProcessPayment" ||
                                   std::string(name) == "OrderCompleted";
            CHECK_MESSAGE(envelope["initiatorId"] == (from_saga ? Json(id) : Json()), name);
            CHECK(envelope["requestId"].is_null());
            CHECK(envelope["responseAddress"].is_null());
            CHECK(envelope["faultAddress"].is_null());
            if (std::string(name) == "ProcessPayment") {
                // A payment lives as long as the order's timeout (5 minutes by default), as the
                // twin's TimeToLive writes it: the broker's expiration and the envelope's time.
                CHECK(raw.properties.expiration == "300000");
                const auto expires = ParseIso8601(envelope["expirationTime"].get<std::string>());
                const auto sent = ParseIso8601(envelope["sentTime"].get<std::string>());
                REQUIRE(expires);
                REQUIRE(sent);
                CHECK(*expires - *sent == std::chrono::minutes(5));
            } else {
                CHECK(raw.properties.expiration.empty());
                CHECK(envelope["expirationTime"].is_null());
            }
            const std::string base =
                "rabbitmq://127.0.0.1:" + std::to_string(BrokerEnvironment::Get().amqp_port) + "/" + vhost.name() + "/";
            CHECK(envelope["destinationAddress"] == base + "Contracts:" + name);
            CHECK(envelope["sourceAddress"].get<std::string>().rfind(base, 0) == 0);
            CHECK(envelope["messageType"] == Json::array({urn}));
            CHECK(ParseIso8601(envelope["sentTime"].get<std::string>()).has_value());
            CHECK(envelope["sentTime"].get<std::string>().back() == 'Z');
            CHECK(envelope["headers"].is_object());
            for (const char* key : {"machineName", "processName", "processId", "assembly", "assemblyVersion",
                                    "frameworkVersion", "massTransitVersion", "operatingSystemVersion"})
                CHECK_MESSAGE(envelope["host"].contains(key), key);
            CHECK(envelope["host"]["processId"].is_number_integer());
            CHECK(envelope["message"]["orderId"] == id);
        }
        const Json submitted = Json::parse(seen["urn:message:Contracts:OrderSubmitted"].body);
        CHECK(submitted["sourceAddress"].get<std::string>().find("_bus_") != std::string::npos);
        CHECK(submitted["sourceAddress"].get<std::string>().find("?temporary=true") != std::string::npos);
        CHECK(submitted["message"]["totalAmount"] == "24.50");
        CHECK(submitted["message"]["customerNumber"] == "CUST-7");
        CHECK(submitted["message"]["items"][0]["unitPrice"] == "24.50");
        CHECK(submitted["message"]["items"][0]["quantity"] == 1);
        const Json payment = Json::parse(seen["urn:message:Contracts:ProcessPayment"].body);
        CHECK(payment["message"]["amount"] == "24.50");
        CHECK(payment["sourceAddress"].get<std::string>().find("/order-service") != std::string::npos);
        CHECK(payment["conversationId"] == submitted["conversationId"]);
        CHECK(payment["initiatorId"] == id);
    }

    TEST_CASE("Interop: a .NET-style OrderSubmitted completes - a .NET-style Fault<ProcessPayment> fails the order") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {});
        RawAmqpClient dotnet(vhost.name());
        const std::string body = R"json({
          "MessageId": "0B4E00005A1C00159D3F08DE49A2C1F7", "RequestId": null, "CorrelationId": null,
          "ConversationId": "0B4E00005A1C0015A2B608DE49A2C1F7", "InitiatorId": null,
          "SourceAddress": "rabbitmq://localhost/apphost_OrderService_bus_9yoyyyr7mkrbng5sbdqz4xtodc?temporary=true",
          "DestinationAddress": "rabbitmq://localhost/Contracts:OrderSubmitted",
          "MessageType": ["urn:message:Contracts:OrderSubmitted"],
          "Message": {"OrderId": "dotnet-order-3", "Timestamp": "2026-02-10T14:03:05.4129871Z", "CustomerNumber": "CUST-42",
                      "TotalAmount": "149.97", "SomethingTheyAdded": {"x": 1}},
          "ExpirationTime": null, "SentTime": "2026-02-10T14:03:05.4129871Z",
          "Headers": {"MT-Activity-Id": "00-abc-def-01", "Tenant": "acme"},
          "Host": {"MachineName": "apphost", "ProcessName": "OrderApi", "ProcessId": 4711, "Assembly": "OrderApi",
                   "AssemblyVersion": "1.0.0.0", "FrameworkVersion": "8.0.11", "MassTransitVersion": "8.5.8.0",
                   "OperatingSystemVersion": "Unix 6.8.0.45"},
          "ExtraEnvelopeField": true})json";
        messaging::MessageProperties properties;  // no content type, as the checklist allows
        properties.message_id = "0b4e0000-5a1c-0015-9d3f-08de49a2c1f7";
        dotnet.Publish("Contracts:OrderSubmitted", body, properties);
        REQUIRE(system.WaitForStatus("dotnet-order-3", order_service::OrderStatus::kCompleted));
        CHECK(system.Order("dotnet-order-3")->total_amount == *Decimal::Parse("149.97"));

        // An order waiting for payment, failed by a Fault<ProcessPayment> a .NET payment service published.
        ScopedVhost vhost2;
        BrokerSystem no_payment(vhost2, {.start_payment = false});
        SubmitOrder(no_payment, "dotnet-fault-3");
        REQUIRE(no_payment.WaitForStatus("dotnet-fault-3", order_service::OrderStatus::kInventoryReserved));
        RawAmqpClient peer(vhost2.name());
        const std::string fault = R"json({
          "messageId": "0b4e0000-5a1c-0015-c7d2-08de49a2c3aa", "conversationId": "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7",
          "sourceAddress": "rabbitmq://localhost/payment-service",
          "destinationAddress": "rabbitmq://localhost/MassTransit:Fault--Contracts:ProcessPayment--",
          "messageType": ["urn:message:MassTransit:Fault[[Contracts:ProcessPayment]]", "urn:message:MassTransit:Fault"],
          "message": {"faultId": "0b4e0000-5a1c-0015-1e44-08de49a2c3ab", "faultedMessageId": "0b4e0000-5a1c-0015-77aa-08de49a2c2b0",
                      "timestamp": "2026-02-10T14:03:07.5523310Z",
                      "exceptions": [{"exceptionType": "System.InvalidOperationException", "innerException": null,
                                      "stackTrace": "   at Payment.ProcessPaymentConsumer.Consume(...)",
                                      "message": "Card processor down", "source": "PaymentService", "data": null}],
                      "host": {"machineName": "apphost", "processName": "PaymentService", "processId": 5120},
                      "faultMessageTypes": ["urn:message:Contracts:ProcessPayment"],
                      "message": {"orderId": "dotnet-fault-3", "amount": 149.97, "cardNumber": "tok"}},
          "sentTime": "2026-02-10T14:03:07.5530002Z", "headers": {"MT-Fault-RetryCount": 2}, "host": {}})json";
        messaging::MessageProperties fault_properties;
        fault_properties.content_type = "application/vnd.masstransit+json";
        peer.Publish("MassTransit:Fault--Contracts:ProcessPayment--", fault, fault_properties);
        REQUIRE(no_payment.WaitForStatus("dotnet-fault-3", order_service::OrderStatus::kFailed));
        CHECK(no_payment.Order("dotnet-fault-3")->reason == "Payment faulted: Card processor down");
    }

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

    TEST_CASE("Request: a .NET-style CheckInventory request is answered at its responseAddress with its requestId") {
        ScopedVhost vhost;
        BrokerSystem system(vhost, {.start_orders = false, .start_payment = false});
        RawAmqpClient client(vhost.name());
        // What a MassTransit request client has: its bus endpoint's exchange and queue; here durable,
        // though its address says temporary, so the service's declaration of it is refused.
        client.Tap("requester_bus_x", {"requester_bus_x"});
        client.Tap("published-tap", {"Contracts:StockReserved"});
        const std::string response_address =
            "rabbitmq://127.0.0.1:" + std::to_string(BrokerEnvironment::Get().amqp_port) + "/" + vhost.name() +
            "/requester_bus_x?temporary=true";
        auto request = [&](const std::string& order_id, const std::string& request_id, const std::string& address) {
            Json envelope = {{"messageId", "0b4e0000-5a1c-0015-9d3f-08de49a2c1f" + request_id.substr(35)},
                             {"requestId", request_id},
                             {"conversationId", "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7"},
                             {"sourceAddress", response_address},
                             {"destinationAddress", "rabbitmq://localhost/inventory-service"},
                             {"messageType", {"urn:message:Contracts:CheckInventory"}},
                             {"message", {{"orderId", order_id}, {"items", Json::array()}}}};
            if (!address.empty()) envelope["responseAddress"] = address;
            messaging::MessageProperties properties;
            properties.content_type = "application/vnd.masstransit+json";
            properties.message_id = envelope["messageId"];
            client.Publish("inventory-service", envelope.dump(), properties);
        };
        request("request-3", "0b4e0000-5a1c-0015-1111-08de49a2c3a1", response_address);
        const auto response = client.Get("requester_bus_x");
        REQUIRE(response);
        const Json answer = Json::parse(response->body);
        CHECK(answer["requestId"] == "0b4e0000-5a1c-0015-1111-08de49a2c3a1");
        CHECK(answer["messageType"][0] == "urn:message:Contracts:StockReserved");
        CHECK(answer["message"]["orderId"] == "request-3");
        CHECK(answer["conversationId"] == "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7");
        CHECK(answer["destinationAddress"].get<std::string>().find("/requester_bus_x") != std::string::npos);
        CHECK_FALSE(client.Get("published-tap", 500ms).has_value());  // answered, not published

        // Without a responseAddress, RespondAsync publishes, still with the requestId.
        request("request-13", "0b4e0000-5a1c-0015-2222-08de49a2c3a2", "");
        const auto published = client.Get("published-tap");
        REQUIRE(published);
        CHECK(Json::parse(published->body)["requestId"] == "0b4e0000-5a1c-0015-2222-08de49a2c3a2");

        // The refused declaration of another party's exchange did not stop the service.
        CHECK(system.Connected());
        // A requester that is gone: its exchange is declared as its address says before the answer
        // is sent, so the answer is confirmed (and routed nowhere) instead of closing the channel and
        // coming back with the request for ever.
        const std::string gone = "requester_bus_gone";
        request("request-23", "0b4e0000-5a1c-0015-3333-08de49a2c3a3",
                response_address.substr(0, response_address.rfind('/') + 1) + gone + "?temporary=true");
        ManagementApi api;
        const std::string exchange_path = "exchanges/" + Encode(vhost.name()) + "/" + gone;
        REQUIRE(test_support::WaitFor(
            [&] {
                try {
                    return api.Get(exchange_path).contains("durable");
                } catch (const std::exception&) {
                    return false;  // not declared yet
                }
            },
            20s));
        const Json exchange = api.Get(exchange_path);
        CHECK(exchange["durable"] == false);
        CHECK(exchange["auto_delete"] == true);
        request("request-33", "0b4e0000-5a1c-0015-4444-08de49a2c3a4", response_address);
        const auto after = client.Get("requester_bus_x");
        REQUIRE(after);
        CHECK(Json::parse(after->body)["requestId"] == "0b4e0000-5a1c-0015-4444-08de49a2c3a4");
        CHECK(system.Connected());
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
        // The transport belongs to the loop thread: it is closed there, also when a REQUIRE fails.
        struct CloseOnLoop {
            messaging::EventLoop& loop;
            std::unique_ptr<messaging::RabbitMqTransport>& transport;
            ~CloseOnLoop() {
                loop.Invoke([this] { transport.reset(); });
            }
        } close_on_loop{loop_thread.loop(), transport};
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
