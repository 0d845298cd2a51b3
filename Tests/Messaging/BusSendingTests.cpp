// What a consumer sends on the in-memory transport: the envelope fields and headers it carries over
// (conversation, initiator, source, custom headers), trace context and baggage, answers by direct
// reply-to, and the exchange a send address names.
#include <doctest/doctest.h>

#include <set>

#include "Messaging/BusFixture.h"

using namespace contracts::literals;

using namespace messaging;
using namespace bus_test;
using namespace std::chrono_literals;
using contracts::Json;

TEST_SUITE("Bus.Sending") {
    TEST_CASE("Messages sent from a consumer carry the conversation and initiator and source and custom headers") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        SendOptions options;
        options.headers["Tenant"] = "acme";
        options.headers["MT-Internal"] = "not copied";
        TransportMessage incoming = fixture.Prepared({"6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31"_order_id}, options);
        // A peer whose contract has a Guid CorrelationId sets the envelope's correlationId.
        Json with_correlation = Json::parse(incoming.body);
        with_correlation["correlationId"] = "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7";
        incoming.body = with_correlation.dump();
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", incoming).ok());
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderCompleted>(nullptr));
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Unacked() == 0; }));
        const auto published = fixture.harness.Published();
        auto it = std::find_if(published.begin(), published.end(),
                               [](const RecordedMessage& m) { return m.destination == "Contracts:OrderCompleted"; });
        REQUIRE(it != published.end());
        const Json in = Json::parse(incoming.body);
        CHECK(it->envelope["conversationId"] == in["conversationId"]);
        CHECK(it->envelope["initiatorId"] == "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7");
        CHECK(it->envelope["correlationId"] == nullptr);
        CHECK(it->envelope["sourceAddress"] == "loopback://localhost/test-queue");
        CHECK(it->envelope["destinationAddress"] == "loopback://localhost/Contracts:OrderCompleted");
        CHECK(it->envelope["headers"]["Tenant"] == "acme");
        CHECK_FALSE(it->envelope["headers"].contains("MT-Internal"));
        CHECK(Header(it->transport, "Tenant") == "acme");
        CHECK(it->transport.properties.message_id == it->envelope["messageId"]);
        CHECK(it->transport.properties.correlation_id.empty());
    }

    TEST_CASE(
        "Trace: a consumer's messages continue the consumed trace - each in a span of its own - with its baggage") {
        BusFixture fixture(RetryPolicy::None());
        std::string consumer_trace;
        std::string consumer_log_fields;
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            context.AddLogField(contracts::kOrderLogField, message.order_id.str());
            consumer_trace = context.trace().TraceParent();
            AppendCurrentLogFields(consumer_log_fields);
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
            context.Publish(contracts::OrderFailed{.order_id = message.order_id, .reason = "r"});
        };
        const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        const std::string sender_span = "00f067aa0ba902b7";
        TransportMessage incoming = fixture.Prepared({"o-1"_order_id});
        Json envelope = Json::parse(incoming.body);
        envelope["headers"][kActivityIdHeader] = "00-" + trace_id + "-" + sender_span + "-01";
        envelope["headers"][kActivityBaggageHeader] = Json::parse(R"([{"key":"tenant","value":"acme"}])");
        incoming.body = envelope.dump();
        // MassTransit reads the parent from the AMQP header: it wins over the envelope's.
        envelope["headers"][kActivityIdHeader] = "00-" + std::string(32, 'e') + "-" + sender_span + "-01";
        incoming.body = envelope.dump();
        incoming.properties.headers[kActivityIdHeader] = "00-" + trace_id + "-" + sender_span + "-01";
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", incoming).ok());
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderFailed>(nullptr));
        std::set<std::string> spans = {sender_span};
        const auto consumer_span = TraceContext::Parse(consumer_trace);
        REQUIRE(consumer_span);
        CHECK(consumer_span->trace_id == trace_id);
        CHECK(spans.insert(consumer_span->span_id).second);
        // The trace id, then the message's id, set by the bus; the order id the consumer added.
        CHECK(consumer_log_fields ==
              " trace=" + trace_id + " message=" + envelope["messageId"].get<std::string>() + " order=o-1");
        for (const char* destination : {"Contracts:OrderCompleted", "Contracts:OrderFailed"}) {
            INFO(destination);
            const auto published = fixture.harness.Published();
            auto it = std::find_if(published.begin(), published.end(),
                                   [&](const RecordedMessage& m) { return m.destination == destination; });
            REQUIRE(it != published.end());
            const auto span = TraceContext::Parse(Header(it->transport, kActivityIdHeader));
            REQUIRE(span);
            CHECK(span->trace_id == trace_id);
            CHECK(span->flags == 1);
            CHECK(spans.insert(span->span_id).second);
            CHECK(it->envelope["headers"][kActivityIdHeader] == span->TraceParent());
            CHECK(it->envelope["headers"][kActivityBaggageHeader] ==
                  Json::parse(R"([{"key":"tenant","value":"acme"}])"));
            // As MassTransit's transport, the AMQP headers carry no array: the baggage is the envelope's.
            CHECK(FindHeader(it->transport.properties.headers, kActivityBaggageHeader) == nullptr);
        }
    }

    TEST_CASE("Trace: without a valid trace the consumer starts one - shared by what it sends and by its fault") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            if (message.order_id.str() == "o-fault") throw std::runtime_error("no trace of its own");
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
            context.Publish(contracts::OrderFailed{.order_id = message.order_id, .reason = "r"});
        };
        auto untraced = [&](const char* order_id) {
            TransportMessage incoming = fixture.Prepared({contracts::OrderId::Parse(order_id).value()});
            Json envelope = Json::parse(incoming.body);
            envelope["headers"][kActivityIdHeader] = "00-not-a-trace";
            incoming.body = envelope.dump();
            incoming.properties.headers.erase(kActivityIdHeader);
            return incoming;
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", untraced("o-2")).ok());
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", untraced("o-fault")).ok());
        REQUIRE(fixture.WaitQueue(ErrorQueueName(kQueue), 1));
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderFailed>(nullptr));
        std::map<std::string, std::string> trace_of;  // destination -> trace id
        for (const auto& message : fixture.harness.Published()) {
            if (message.destination == "Contracts:StockReserved") continue;
            const auto span = TraceContext::Parse(Header(message.transport, kActivityIdHeader));
            REQUIRE_MESSAGE(span, message.destination);
            trace_of[message.destination.substr(0, message.destination.find('-'))] = span->trace_id;
            CHECK_FALSE(message.envelope["headers"].contains(kActivityBaggageHeader));
        }
        CHECK(trace_of.at("Contracts:OrderCompleted") == trace_of.at("Contracts:OrderFailed"));
        REQUIRE(trace_of.count("MassTransit:Fault"));
        CHECK(trace_of.at("MassTransit:Fault") != trace_of.at("Contracts:OrderCompleted"));
        // The _error copy is the message as it came: the bus adds no trace to it.
        CHECK(Header(fixture.Queue(ErrorQueueName(kQueue)).at(0), kActivityIdHeader) == "<missing>");
    }

    TEST_CASE("Trace: with propagation off nothing sent carries trace headers - the consumer still logs the trace") {
        BusFixture fixture(RetryPolicy::None(), 0, false, {.service_name = "TestService", .propagate_trace = false});
        std::string consumer_log_fields;
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            if (message.order_id.str() == "o-fault") throw std::runtime_error("fault without a trace header");
            AppendCurrentLogFields(consumer_log_fields);
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        const std::string traceparent = "00-" + trace_id + "-00f067aa0ba902b7-01";
        auto traced = [&](const char* order_id) {
            TransportMessage incoming = fixture.Prepared({contracts::OrderId::Parse(order_id).value()});
            // Published outside a consumer, so without a trace of its own.
            CHECK(Header(incoming, kActivityIdHeader) == "<missing>");
            CHECK_FALSE(Json::parse(incoming.body)["headers"].contains(kActivityIdHeader));
            incoming.properties.headers[kActivityIdHeader] = traceparent;
            Json envelope = Json::parse(incoming.body);
            envelope["headers"][kActivityIdHeader] = traceparent;
            envelope["headers"][kActivityBaggageHeader] = Json::parse(R"([{"key":"tenant","value":"acme"}])");
            incoming.body = envelope.dump();
            return incoming;
        };
        const TransportMessage first = traced("o-1");
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", first).ok());
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", traced("o-fault")).ok());
        REQUIRE(fixture.WaitQueue(ErrorQueueName(kQueue), 1));
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderCompleted>(nullptr));
        CHECK(consumer_log_fields ==
              " trace=" + trace_id + " message=" + Json::parse(first.body)["messageId"].get<std::string>());
        std::set<std::string> sent;  // exchanges, up to the first '-'
        for (const auto& message : fixture.harness.Published()) {
            if (message.destination == "Contracts:StockReserved") continue;
            INFO(message.destination);
            sent.insert(message.destination.substr(0, message.destination.find('-')));
            CHECK(FindHeader(message.transport.properties.headers, kActivityIdHeader) == nullptr);
            CHECK_FALSE(message.envelope["headers"].contains(kActivityIdHeader));
            CHECK_FALSE(message.envelope["headers"].contains(kActivityBaggageHeader));
        }
        CHECK(sent == std::set<std::string>{"Contracts:OrderCompleted", "MassTransit:Fault"});
    }

    TEST_CASE(
        "Direct reply-to: answers and faults go to the default exchange routed by reply_to - with the requestId") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            if (message.order_id.str() == "o-fault") throw std::runtime_error("cannot answer");
            context.Respond(contracts::OrderCompleted{.order_id = message.order_id});
        };
        const std::string reply_queue = "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAxMjM0";
        fixture.loop_thread.loop().Invoke(
            [&] { REQUIRE(fixture.transport->DeclareNow(QueueWithExchange(reply_queue)).ok()); });
        auto request = [&](const char* order_id, const std::string& reply_to) {
            TransportMessage message = fixture.Prepared({contracts::OrderId::Parse(order_id).value()});
            Json envelope = Json::parse(message.body);
            envelope["requestId"] = "a4310000-9b00-4ee5-1ad3-08df517fb8c8";
            envelope["responseAddress"] = "rabbitmq://localhost/amq.rabbitmq.reply-to";
            message.body = envelope.dump();
            message.properties.reply_to = reply_to;
            return message;
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", request("o-1", reply_queue)).ok());
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", request("o-fault", reply_queue)).ok());
        REQUIRE(fixture.WaitQueue(reply_queue, 2));
        std::set<std::string> answers;
        for (const auto& answer : fixture.Queue(reply_queue)) {
            const Json envelope = Json::parse(answer.body);
            answers.insert(envelope["messageType"][0].get<std::string>());
            CHECK(envelope["requestId"] == "a4310000-9b00-4ee5-1ad3-08df517fb8c8");
            CHECK(envelope["destinationAddress"] == "loopback://localhost/amq.rabbitmq.reply-to");
        }
        CHECK(answers == std::set<std::string>{"urn:message:Contracts:OrderCompleted",
                                               "urn:message:MassTransit:Fault[[Contracts:StockReserved]]"});
        // Without reply_to there is no one to answer: the answer cannot be sent, and the fault is published.
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", request("o-2", "")).ok());
        REQUIRE(fixture.WaitQueue(ErrorQueueName(kQueue), 2));
        CHECK(Header(fixture.Queue(ErrorQueueName(kQueue)).back(), "MT-Fault-Message").find("no reply_to") !=
              std::string::npos);
        CHECK(fixture.Queue("fault-observer").size() == 1);
    }

    TEST_CASE(
        "An answer to an address whose exchange does not exist declares it first - as MassTransit - and never loops") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            context.Respond(contracts::OrderCompleted{.order_id = message.order_id});
        };
        TransportMessage request = fixture.Prepared({"o-1"_order_id});
        Json envelope = Json::parse(request.body);
        envelope["requestId"] = "a4310000-9b00-4ee5-1ad3-08df517fb8c8";
        envelope["responseAddress"] = "loopback://localhost/vm_Requester_bus_gone?temporary=true";
        request.body = envelope.dump();
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", request).ok());
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderCompleted>(nullptr));
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Unacked() == 0 && fixture.Queue(kQueue).empty(); }));
        CHECK(fixture.attempts.load() == 1);
        CHECK(fixture.Queue(ErrorQueueName(kQueue)).empty());
    }

    TEST_CASE("The exchange of a send address: MassTransit's defaults and query keys") {
        CHECK(SendExchangeOfAddress("rabbitmq://h/v/order-service") ==
              ExchangeSpec{.name = "order-service", .type = "fanout", .durable = true, .auto_delete = false});
        CHECK(SendExchangeOfAddress("rabbitmq://h/v/vm_Twin_bus_x?temporary=true") ==
              ExchangeSpec{.name = "vm_Twin_bus_x", .type = "fanout", .durable = false, .auto_delete = true});
        CHECK(SendExchangeOfAddress("rabbitmq://h/v/e?durable=False&autodelete=TRUE&type=topic&bind=true") ==
              ExchangeSpec{.name = "e", .type = "topic", .durable = false, .auto_delete = true});
        CHECK(SendExchangeOfAddress("rabbitmq://h/v/e?temporary=maybe&durable") == ExchangeSpec{.name = "e"});
    }

    TEST_CASE("A consumer that names its correlation id (a saga) makes it the initiatorId of what it sends") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            context.SetCorrelationId("6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31");
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-9"_order_id})).ok());
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderCompleted>(nullptr));
        const auto published = fixture.harness.Published();
        auto it = std::find_if(published.begin(), published.end(),
                               [](const RecordedMessage& m) { return m.destination == "Contracts:OrderCompleted"; });
        REQUIRE(it != published.end());
        CHECK(it->envelope["initiatorId"] == "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31");
        CHECK(it->envelope["correlationId"] == nullptr);
    }
}
