// Endpoints with Serializer RawJson on the in-memory transport: MassTransit's raw headers read and
// written, faults and `_error` copies of raw messages, and answers by the RequestId header.
#include <doctest/doctest.h>

#include "Messaging/BusFixture.h"

using namespace contracts::literals;

using namespace messaging;
using namespace bus_test;
using namespace std::chrono_literals;
using contracts::Json;

namespace {

// StockReserved as MassTransit's raw serializer sends it.
TransportMessage RawStockReserved(const std::string& order_id) {
    TransportMessage message;
    message.body = R"({"orderId":")" + order_id + R"("})";
    message.properties.content_type = "application/json";
    message.properties.message_id = "0b1d0000-0000-4000-8000-000000000001";
    message.properties.headers = {
        {"MessageId", std::string("0b1d0000-0000-4000-8000-000000000001")},
        {"ConversationId", std::string("0b1d0000-0000-4000-8000-000000000002")},
        {"CorrelationId", std::string("0b1d0000-0000-4000-8000-000000000003")},
        {"MT-MessageType", std::string("urn:message:Contracts:StockReserved;urn:message:Contracts:Other")},
        {"MT-Source-Address", std::string("rabbitmq://localhost/sender")},
        {"MT-Host-Info", std::string(R"({"MachineName":"box","ProcessName":"Sender","ProcessId":7})")},
        {"Custom-Header", std::string("kept")}};
    return message;
}

}  // namespace

TEST_SUITE("Bus.RawJson") {
    TEST_CASE("A raw JSON endpoint reads MassTransit's raw headers - and what its consumer sends is raw JSON") {
        BusFixture fixture(RetryPolicy::None(), 0, /*raw_json=*/true);
        std::promise<Envelope> consumed;
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            consumed.set_value(context.envelope());
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", RawStockReserved("o-1")).ok());
        auto consumed_envelope = consumed.get_future();
        REQUIRE(consumed_envelope.wait_for(10s) == std::future_status::ready);
        const Envelope envelope = consumed_envelope.get();
        CHECK(envelope.message_id == "0b1d0000-0000-4000-8000-000000000001");
        CHECK(envelope.conversation_id == "0b1d0000-0000-4000-8000-000000000002");
        CHECK(envelope.correlation_id == "0b1d0000-0000-4000-8000-000000000003");
        CHECK(envelope.source_address == "rabbitmq://localhost/sender");
        CHECK(envelope.message_type ==
              std::vector<std::string>{"urn:message:Contracts:StockReserved", "urn:message:Contracts:Other"});
        CHECK(envelope.host.machine_name == "box");
        CHECK(envelope.host.process_id == 7);
        CHECK(envelope.headers == Json{{"Custom-Header", "kept"}});

        auto is_completed = [](const RecordedMessage& m) { return m.destination == "Contracts:OrderCompleted"; };
        REQUIRE(fixture.harness.WaitUntil([&] {
            const auto published = fixture.harness.Published();
            return std::any_of(published.begin(), published.end(), is_completed);
        }));
        const auto published = fixture.harness.Published();
        const auto completed = std::find_if(published.begin(), published.end(), is_completed);
        REQUIRE(completed != published.end());
        const TransportMessage& raw = completed->transport;
        CHECK(raw.body == R"({"orderId":"o-1"})");
        CHECK(raw.properties.content_type == "application/json");
        CHECK(Header(raw, "MessageId") == raw.properties.message_id);
        CHECK(Header(raw, "ConversationId") == "0b1d0000-0000-4000-8000-000000000002");
        CHECK(Header(raw, "MT-InitiatorId") == "0b1d0000-0000-4000-8000-000000000003");
        CHECK(Header(raw, "MT-MessageType") == "urn:message:Contracts:OrderCompleted");
        CHECK(Header(raw, "MT-Source-Address") == "loopback://localhost/test-queue");
        CHECK(Header(raw, "Custom-Header") == "kept");
        CHECK(Header(raw, "RequestId") == "<missing>");
        // MassTransit's host, as System.Text.Json writes it (seen from the twin): PascalCase, this order.
        const auto host = contracts::OrderedJson::parse(Header(raw, "MT-Host-Info"));
        std::vector<std::string> names;
        for (const auto& [name, value] : host.items()) names.push_back(name);
        CHECK(names == std::vector<std::string>{"MachineName", "ProcessName", "ProcessId", "Assembly",
                                                "AssemblyVersion", "FrameworkVersion", "MassTransitVersion",
                                                "OperatingSystemVersion"});
        CHECK(host["ProcessName"] == "TestService");
    }

    TEST_CASE(
        "Raw JSON: the content type may come from a Content-Type header - no type header is for the one consumer") {
        BusFixture fixture(RetryPolicy::None(), 0, /*raw_json=*/true);
        TransportMessage message = RawStockReserved("o-2");
        message.properties.content_type.clear();
        message.properties.headers["Content-Type"] = std::string("application/json; charset=utf-8");
        message.properties.headers.erase("MT-MessageType");
        // A plain JSON producer's own message_id, not a GUID: the message is read all the same.
        message.properties.headers.erase("MessageId");
        message.properties.message_id = "order-2-created";
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", message).ok());
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts.load() == 1; }));
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Unacked() == 0; }));
        CHECK(fixture.Queue(SkippedQueueName(kQueue)).empty());
        CHECK(fixture.Queue(ErrorQueueName(kQueue)).empty());
    }

    TEST_CASE("Raw JSON: a consumer's fault is raw JSON with the message as written - the _error copy is as it came") {
        BusFixture fixture(RetryPolicy::None(), 0, /*raw_json=*/true);
        fixture.handler = AlwaysThrow;
        TransportMessage message = RawStockReserved("o-3");
        message.body = R"({"orderId":"o-3","zeta":1,"alpha":2})";
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", message).ok());
        REQUIRE(fixture.WaitQueue(ErrorQueueName(kQueue), 1));
        CHECK(fixture.Queue(ErrorQueueName(kQueue)).at(0).body == message.body);
        REQUIRE(fixture.Queue("fault-observer").size() == 1);
        const TransportMessage fault = fixture.Queue("fault-observer").at(0);
        CHECK(fault.properties.content_type == "application/json");
        CHECK(Header(fault, "MT-MessageType") ==
              "urn:message:MassTransit:Fault[[Contracts:StockReserved]];urn:message:MassTransit:Fault");
        const auto body = contracts::OrderedJson::parse(fault.body);
        CHECK(body["message"].dump() == message.body);
        CHECK(body["exceptions"][0]["message"] == "boom");
    }

    TEST_CASE("Raw JSON: a raw JSON endpoint's answer reaches our request client by its RequestId header") {
        BusFixture fixture(RetryPolicy::None(), 0, /*raw_json=*/true);
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            if (message.order_id.str() == "o-fault") throw std::runtime_error("no");
            context.Respond(contracts::OrderFailed{.order_id = message.order_id, .reason = "raw"});
        };
        const RequestOutcome outcome = Ask(fixture, "o-5", 5s);
        REQUIRE(outcome.kind == RequestOutcome::Kind::kResponse);
        REQUIRE(outcome.Is<contracts::OrderFailed>());
        CHECK(outcome.Read<contracts::OrderFailed>().reason == "raw");
        const RequestOutcome fault = Ask(fixture, "o-fault", 5s);
        CHECK(fault.kind == RequestOutcome::Kind::kFault);
        CHECK(fault.error == "no");
    }

    TEST_CASE("Without Serializer RawJson an endpoint does not read application/json - it goes to _error") {
        BusFixture fixture(RetryPolicy::None());
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", RawStockReserved("o-4")).ok());
        REQUIRE(fixture.WaitQueue(ErrorQueueName(kQueue), 1));
        CHECK(fixture.attempts.load() == 0);
    }
}
