// Against the real RabbitMQ node: the topology as MassTransit declares it, the AMQP properties and
// envelopes on the wire, interop with hand-made .NET-style messages, and request/response.
// Each test has a vhost of its own.
#include <doctest/doctest.h>

#include <set>

#include "Broker/BrokerSupport.h"

using namespace broker_test;
using namespace contracts;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kMessageNames = {
    "OrderSubmitted", "CheckInventory",      "StockReserved",  "StockShortage", "ProcessPayment", "PaymentAccepted",
    "PaymentFailed",  "OrderTimeoutExpired", "OrderCompleted", "OrderFailed",   "ReleaseStock",   "StockReleased"};

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
}
