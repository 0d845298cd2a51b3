// The consume pipeline on the in-memory transport: retry counts and delays, exactly one Fault<T> and
// one `_error` copy with MassTransit's headers, `_skipped` for unknown types, `_error` for bodies
// that do not parse or break the contract, and deliveries that go back to the queue (a publish that
// fails, a stop while a retry waits).
#include <doctest/doctest.h>

#include <atomic>

#include "Messaging/BusFixture.h"

using namespace contracts::literals;

using namespace messaging;
using namespace bus_test;
using namespace std::chrono_literals;
using contracts::Json;

TEST_SUITE("Bus") {
    TEST_CASE("Immediate(5): a consumer that always throws runs 6 times - then faults once") {
        BusFixture fixture(RetryPolicy::Immediate(5));
        fixture.handler = AlwaysThrow;
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        CHECK(fixture.attempts == 6);
        CHECK(fixture.Queue("test-queue_error").size() == 1);
        CHECK(fixture.Queue("fault-observer").size() == 1);
        CHECK(fixture.Unacked() == 0);
        CHECK(fixture.Queue(kQueue).empty());
    }

    TEST_CASE("_error deleted at runtime: the next move declares it again - the copy is never lost") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = AlwaysThrow;
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        // An operator deletes the queue; its exchange stays, so a plain publish would be confirmed
        // and go nowhere.
        fixture.loop_thread.loop().Invoke([&] { fixture.transport->DeleteQueue("test-queue_error"); });
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-2"_order_id})).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        const auto copies = fixture.Queue("test-queue_error");
        REQUIRE(copies.size() == 1);
        CHECK(Json::parse(copies[0].body)["message"]["orderId"] == "o-2");
        CHECK(fixture.attempts == 2);  // moved again, not consumed again
        CHECK(fixture.Queue(kQueue).empty());
    }

    TEST_CASE("_skipped deleted at runtime: the next move declares it again") {
        BusFixture fixture(RetryPolicy::None());
        auto unknown = [&] {
            TransportMessage message = fixture.Prepared({"o-1"_order_id});
            Json envelope = Json::parse(message.body);
            envelope["messageType"] = Json::array({"urn:message:Contracts:Unheard"});
            message.body = envelope.dump();
            return message;
        };
        REQUIRE(fixture.PublishRaw(kQueue, unknown()).ok());
        REQUIRE(fixture.WaitQueue("test-queue_skipped", 1));
        fixture.loop_thread.loop().Invoke([&] { fixture.transport->DeleteQueue("test-queue_skipped"); });
        const TransportMessage second = unknown();
        REQUIRE(fixture.PublishRaw(kQueue, second).ok());
        REQUIRE(fixture.WaitQueue("test-queue_skipped", 1));
        const auto copies = fixture.Queue("test-queue_skipped");
        REQUIRE(copies.size() == 1);
        CHECK(copies[0].body == second.body);
        CHECK(fixture.Queue(kQueue).empty());
    }

    TEST_CASE("Interval(3 x 500ms): 4 attempts spread over at least 1.5 s") {
        BusFixture fixture(RetryPolicy::Interval(3, 500ms));
        fixture.handler = AlwaysThrow;
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        CHECK(fixture.attempts == 4);
        std::lock_guard lock(fixture.mutex);
        REQUIRE(fixture.attempt_times.size() == 4);
        CHECK(fixture.attempt_times.back() - fixture.attempt_times.front() >= 1500ms);
        for (std::size_t i = 1; i < fixture.attempt_times.size(); ++i)
            CHECK(fixture.attempt_times[i] - fixture.attempt_times[i - 1] >= 500ms);
    }

    TEST_CASE("The _error copy is the unchanged body with every MassTransit fault header") {
        BusFixture fixture(RetryPolicy::Immediate(3));
        fixture.handler = AlwaysThrow;
        TransportMessage original = fixture.Prepared({"o-7"_order_id});
        original.properties.expiration = "60000";
        original.properties.headers["Custom-Header"] = std::string("kept");
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", original).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        const TransportMessage copy = fixture.Queue("test-queue_error").at(0);

        CHECK(copy.body == original.body);
        CHECK(copy.properties.message_id == original.properties.message_id);
        CHECK(copy.properties.content_type == "application/vnd.masstransit+json");
        CHECK(copy.properties.delivery_mode == 2);
        CHECK(copy.properties.expiration.empty());
        CHECK(Header(copy, "Custom-Header") == "kept");
        CHECK(Header(copy, "MT-Reason") == "fault");
        CHECK(Header(copy, "MT-Fault-ExceptionType") == "std.runtime_error");
        CHECK(Header(copy, "MT-Fault-InputAddress") == "loopback://localhost/test-queue");
        CHECK(Header(copy, "MT-Fault-Message") == "boom");
        CHECK(contracts::ParseIso8601(Header(copy, "MT-Fault-Timestamp")).has_value());
        CHECK(Header(copy, "MT-Fault-StackTrace").find("Tests.StockReservedConsumer") != std::string::npos);
        CHECK(Header(copy, "MT-Fault-ConsumerType") == "Tests.StockReservedConsumer");
        CHECK(Header(copy, "MT-Fault-MessageType") == "Contracts.StockReserved");
        // Immediate(3): 4 attempts, 3 retries, which MassTransit 8.5.12 writes as 3 (the twin shows it).
        const auto* retry_count = FindHeader(copy.properties.headers, "MT-Fault-RetryCount");
        REQUIRE(retry_count);
        CHECK(std::get<std::int32_t>(*retry_count) == 3);
        for (const char* name : {"MT-Host-MachineName", "MT-Host-ProcessName", "MT-Host-ProcessId", "MT-Host-Assembly",
                                 "MT-Host-AssemblyVersion", "MT-Host-MassTransitVersion", "MT-Host-FrameworkVersion",
                                 "MT-Host-OperatingSystemVersion"}) {
            const auto* value = FindHeader(copy.properties.headers, name);
            REQUIRE_MESSAGE(value, name);
            CHECK(std::holds_alternative<std::string>(*value));  // ProcessId too travels as a string
        }
        CHECK(Header(copy, "MT-Host-ProcessId") == std::to_string(getpid()));
    }

    TEST_CASE("Exactly one Fault<T> is published - with MassTransit's envelope and body") {
        BusFixture fixture(RetryPolicy::Immediate(2));
        fixture.handler = AlwaysThrow;
        const TransportMessage original = fixture.Prepared({"6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31"_order_id});
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", original).ok());
        REQUIRE(fixture.WaitQueue("fault-observer", 1));
        const auto faults = fixture.harness.Published();
        const auto count = std::count_if(faults.begin(), faults.end(), [](const RecordedMessage& m) {
            return m.destination == "MassTransit:Fault--Contracts:StockReserved--";
        });
        CHECK(count == 1);
        const Json fault = Json::parse(fixture.Queue("fault-observer").at(0).body);
        const Json consumed = Json::parse(original.body);
        CHECK(fault["messageType"] == Json::array({"urn:message:MassTransit:Fault[[Contracts:StockReserved]]",
                                                   "urn:message:MassTransit:Fault"}));
        // Our contracts have no Guid CorrelationId, so MassTransit leaves correlationId null, and the
        // initiatorId (the consumed correlationId, else its requestId) null too.
        CHECK(fault["correlationId"] == nullptr);
        CHECK(fault["initiatorId"] == nullptr);
        CHECK(fault["conversationId"] == consumed["conversationId"]);
        CHECK(fault["sourceAddress"] == "loopback://localhost/test-queue");
        CHECK(fault["destinationAddress"] == "loopback://localhost/MassTransit:Fault--Contracts:StockReserved--");
        CHECK(fault["headers"]["MT-Fault-RetryCount"] == 2);
        const Json& body = fault["message"];
        CHECK(contracts::Guid::Parse(body["faultId"].get<std::string>()).has_value());
        CHECK(body["faultedMessageId"] == consumed["messageId"]);
        CHECK(body["exceptions"].size() == 1);
        CHECK(body["exceptions"][0]["message"] == "boom");
        CHECK(body["exceptions"][0]["exceptionType"] == "std.runtime_error");
        CHECK(body["faultMessageTypes"] == Json::array({"urn:message:Contracts:StockReserved"}));
        // The faulted message as its sender wrote it, fields in the same order.
        const auto ordered_fault = contracts::OrderedJson::parse(fixture.Queue("fault-observer").at(0).body);
        const auto ordered_consumed = contracts::OrderedJson::parse(original.body);
        CHECK(ordered_fault["message"]["message"].dump() == ordered_consumed["message"].dump());
        CHECK(body["host"]["processName"] == "TestService");
    }

    TEST_CASE("A fault goes to faultAddress when the message names one") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = AlwaysThrow;
        fixture.loop_thread.loop().Invoke(
            [&] { REQUIRE(fixture.transport->DeclareNow(QueueWithExchange("my-faults")).ok()); });
        TransportMessage message = fixture.Prepared({"o-1"_order_id});
        Json envelope = Json::parse(message.body);
        envelope["faultAddress"] = "loopback://localhost/my-faults";
        message.body = envelope.dump();
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", message).ok());
        REQUIRE(fixture.WaitQueue("my-faults", 1));
        CHECK(fixture.attempts == 1);
        CHECK(fixture.Queue("fault-observer").empty());
    }

    TEST_CASE("A message no consumer matches goes to _skipped with MT-Reason=dead-letter") {
        BusFixture fixture(RetryPolicy::Immediate(1));
        TransportMessage message = fixture.Prepared({"o-1"_order_id});
        Json envelope = Json::parse(message.body);
        envelope["messageType"] = Json::array({"urn:message:Contracts:SomethingElse"});
        message.body = envelope.dump();
        REQUIRE(fixture.PublishRaw(kQueue, message).ok());
        REQUIRE(fixture.WaitQueue("test-queue_skipped", 1));
        const TransportMessage copy = fixture.Queue("test-queue_skipped").at(0);
        CHECK(copy.body == message.body);
        CHECK(Header(copy, "MT-Reason") == "dead-letter");
        CHECK(Header(copy, "MT-Host-ProcessName") == "TestService");
        CHECK(fixture.attempts == 0);
        CHECK(fixture.Queue("test-queue_error").empty());
    }

    TEST_CASE("A URN is matched case-insensitively") {
        BusFixture fixture(RetryPolicy::None());
        TransportMessage message = fixture.Prepared({"o-1"_order_id});
        Json envelope = Json::parse(message.body);
        envelope["messageType"] = Json::array({"URN:MESSAGE:contracts:stockreserved"});
        message.body = envelope.dump();
        REQUIRE(fixture.PublishRaw(kQueue, message).ok());
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts == 1 && fixture.Unacked() == 0; }));
        CHECK(fixture.Queue("test-queue_skipped").empty());
    }

    TEST_CASE("A body that does not parse goes to _error without retries") {
        BusFixture fixture(RetryPolicy::Immediate(5));
        TransportMessage garbage;
        garbage.body = "{this is not json";
        garbage.properties.message_id = "m-1";
        REQUIRE(fixture.PublishRaw(kQueue, garbage).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        const TransportMessage copy = fixture.Queue("test-queue_error").at(0);
        CHECK(copy.body == garbage.body);
        CHECK(Header(copy, "MT-Reason") == "fault");
        // The innermost exception, as MassTransit writes it: here the reader's own error.
        CHECK(Header(copy, "MT-Fault-ExceptionType") == "messaging.EnvelopeError");
        CHECK(Header(copy, "MT-Fault-Message") == "the message body is not valid JSON");
        CHECK(FindHeader(copy.properties.headers, "MT-Fault-ConsumerType") == nullptr);
        CHECK(fixture.attempts == 0);
        // And one ReceiveFault, published to MassTransit:ReceiveFault (bound to MassTransit:Fault).
        REQUIRE(fixture.WaitQueue("fault-observer", 1));
        const auto faults = fixture.Queue("fault-observer");
        REQUIRE(faults.size() == 1);
        const Json fault = Json::parse(faults[0].body);
        CHECK(fault["messageType"] ==
              Json::array({"urn:message:MassTransit:ReceiveFault", "urn:message:MassTransit:Fault"}));
        CHECK(fault["sourceAddress"] == "loopback://localhost/test-queue");
        CHECK(fault["destinationAddress"] == "loopback://localhost/MassTransit:ReceiveFault");
        CHECK(fault["message"]["faultedMessageId"] == "m-1");
        CHECK(fault["message"]["faultMessageTypes"] == nullptr);
        CHECK(fault["message"]["contentType"] == "application/vnd.masstransit+json");
        const Json& exception = fault["message"]["exceptions"][0];
        CHECK(exception["exceptionType"] == "System.Runtime.Serialization.SerializationException");
        CHECK(exception["innerException"]["exceptionType"] == "messaging.EnvelopeError");
        CHECK(exception["innerException"]["message"] == "the message body is not valid JSON");
    }

    TEST_CASE("A message whose fields break the contract faults at once - without retries") {
        BusFixture fixture(RetryPolicy::Immediate(5));
        TransportMessage message = fixture.Prepared({"o-1"_order_id});
        Json envelope = Json::parse(message.body);
        envelope["message"] = Json::object({{"orderId", "not valid!"}});
        message.body = envelope.dump();
        REQUIRE(fixture.PublishRaw(kQueue, message).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        CHECK(fixture.attempts == 0);  // the handler never saw it: the contract rejected it
        CHECK(Header(fixture.Queue("test-queue_error").at(0), "MT-Fault-Message").find("StockReserved.orderId") == 0);
        CHECK(fixture.Queue("fault-observer").size() == 1);
    }

    TEST_CASE("A consumer that recovers on a retry is acked once and publishes once") {
        BusFixture fixture(RetryPolicy::Interval(3, 10ms));
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            if (context.retry_attempt() < 2) throw std::runtime_error("transient");
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        REQUIRE(fixture.harness.WaitPublished<contracts::OrderCompleted>(nullptr));
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Unacked() == 0; }));
        CHECK(fixture.attempts == 3);
        CHECK(fixture.harness.Published<contracts::OrderCompleted>().size() == 1);
        CHECK(fixture.Queue("test-queue_error").empty());
    }

    TEST_CASE("If a consumer's messages cannot be published - the delivery returns to the queue") {
        BusFixture fixture(RetryPolicy::None());
        std::atomic<bool> seen{false};
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            seen = true;
            // The broker goes away while the consumer works.
            fixture.transport->SetAvailable(false);
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        REQUIRE(fixture.harness.WaitUntil([&] { return seen.load() && fixture.Queue(kQueue).size() == 1; }));
        CHECK(fixture.Unacked() == 0);
        CHECK(fixture.Queue("test-queue_error").empty());
        fixture.handler = nullptr;
        fixture.loop_thread.loop().Invoke([&] { fixture.transport->SetAvailable(true); });
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Queue(kQueue).empty() && fixture.Unacked() == 0; }));
        CHECK(fixture.attempts == 2);
    }

    TEST_CASE("Stop returns deliveries waiting for a retry to the queue") {
        BusFixture fixture(RetryPolicy::Interval(3, 60s));
        fixture.handler = AlwaysThrow;
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts == 1; }));
        std::promise<void> stopped;
        fixture.loop_thread.loop().Post([&] { fixture.bus->Stop([&] { stopped.set_value(); }); });
        REQUIRE(stopped.get_future().wait_for(5s) == std::future_status::ready);
        CHECK(fixture.Queue(kQueue).size() == 1);
        CHECK(fixture.Unacked() == 0);
    }
}
