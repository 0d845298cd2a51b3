// The consume pipeline on the in-memory transport: retry counts and delays, exactly one Fault<T> and
// one `_error` copy with MassTransit's headers, `_skipped` for unknown types, `_error` for bodies
// that do not parse, outbox semantics (ack after confirms), and envelope propagation.
#include <doctest/doctest.h>

#include <atomic>
#include <set>

#include "Support/Waiting.h"
#include "Testing/TestHarness.h"
#include "Transport/InMemoryTransport.h"

using namespace contracts::literals;

using namespace messaging;
using namespace std::chrono_literals;
using contracts::Json;

namespace {

const char* const kQueue = "test-queue";

// A bus with one endpoint consuming StockReserved through `handler`, plus an observer queue bound to
// MassTransit:Fault so faults can be read back.
struct BusFixture {
    explicit BusFixture(RetryPolicy retry, int redelivery_limit = 0, bool raw_json = false,
                        BusSettings bus_settings = {.service_name = "TestService"}) {
        loop_thread.loop().Invoke([&] {
            transport = std::make_unique<InMemoryTransport>(loop_thread.loop());
            bus = std::make_unique<Bus>(loop_thread.loop(), *transport, std::move(bus_settings));
            harness.Observe(*bus);
            bus->AddReceiveEndpoint({.queue = kQueue,
                                     .prefetch = 16,
                                     .retry = retry,
                                     .redelivery_limit = redelivery_limit,
                                     .raw_json = raw_json})
                .Handle<contracts::StockReserved>(
                    "Tests.StockReservedConsumer",
                    [this](ConsumeContext& context, const contracts::StockReserved& message) {
                        attempts.fetch_add(1);
                        {
                            std::lock_guard lock(mutex);
                            attempt_times.push_back(std::chrono::steady_clock::now());
                        }
                        if (handler) handler(context, message);
                    });
            REQUIRE(bus->Start().ok());
            // The bus declares MassTransit:Fault with the first fault it publishes; the observer
            // declares it too (same flags), as a peer listening for faults would.
            Topology observer = QueueWithExchange("fault-observer");
            observer.AddExchange("MassTransit:Fault");
            observer.BindExchange("MassTransit:Fault", "fault-observer");
            REQUIRE(transport->DeclareNow(observer).ok());
        });
    }
    ~BusFixture() {
        loop_thread.loop().Invoke([&] {
            bus.reset();
            transport.reset();
        });
    }

    Status PublishRaw(const std::string& exchange, TransportMessage message) {
        auto done = std::make_shared<std::promise<Status>>();
        auto future = done->get_future();
        loop_thread.loop().Post([&, message, done] {
            transport->Publish(exchange, message, [done](const Status& s) { done->set_value(s); });
        });
        return future.get();
    }

    TransportMessage Prepared(const contracts::StockReserved& message, SendOptions options = {}) {
        return loop_thread.loop().Invoke([&] { return bus->PreparePublish(message, options).message; });
    }

    std::vector<TransportMessage> Queue(const std::string& name) {
        return loop_thread.loop().Invoke([&] { return transport->ReadyMessages(name); });
    }
    std::size_t Unacked() {
        return loop_thread.loop().Invoke([&] { return transport->UnackedCount(kQueue); });
    }
    bool WaitQueue(const std::string& name, std::size_t count) {
        return harness.WaitUntil([&] { return Queue(name).size() >= count && Unacked() == 0; });
    }

    EventLoopThread loop_thread;
    std::unique_ptr<InMemoryTransport> transport;
    std::unique_ptr<Bus> bus;
    TestHarness harness;
    std::function<void(ConsumeContext&, const contracts::StockReserved&)> handler;
    std::atomic<int> attempts{0};
    std::mutex mutex;
    std::vector<std::chrono::steady_clock::time_point> attempt_times;
};

std::string Header(const TransportMessage& message, const std::string& name) {
    const auto* value = FindHeader(message.properties.headers, name);
    return value ? HeaderToString(*value) : std::string("<missing>");
}

void AlwaysThrow(ConsumeContext&, const contracts::StockReserved&) {
    throw std::runtime_error("boom");
}

}  // namespace

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

namespace {

// Sends a request for `order_id` from the loop, accepting OrderCompleted or OrderFailed, and waits for
// its outcome; `sent` receives the request id as soon as it is known.
RequestOutcome Ask(BusFixture& fixture, const char* order_id, std::chrono::milliseconds timeout,
                   std::promise<std::string>* sent = nullptr) {
    auto outcome = std::make_shared<std::promise<RequestOutcome>>();
    auto answered = outcome->get_future();
    fixture.loop_thread.loop().Post([&fixture, order_id, timeout, outcome, sent] {
        const std::string id =
            fixture.bus->Request<contracts::StockReserved, contracts::OrderCompleted, contracts::OrderFailed>(
                kQueue, {contracts::OrderId::Parse(order_id).value()},
                [outcome](RequestOutcome result) { outcome->set_value(std::move(result)); }, {.timeout = timeout});
        if (sent) sent->set_value(id);
    });
    REQUIRE(answered.wait_for(timeout + 10s) == std::future_status::ready);
    return answered.get();
}

std::string ResponseQueue(BusFixture& fixture) {
    return ExchangeOfAddress(fixture.bus->BusAddress());
}

}  // namespace

TEST_SUITE("Bus.RequestClient") {
    TEST_CASE("The answer comes back to the bus endpoint by requestId - the request is written as MassTransit's") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            context.Respond(contracts::OrderCompleted{.order_id = message.order_id});
        };
        const RequestOutcome outcome = Ask(fixture, "o-1", 5s);
        REQUIRE(outcome.kind == RequestOutcome::Kind::kResponse);
        CHECK(outcome.Is<contracts::OrderCompleted>());
        CHECK_FALSE(outcome.Is<contracts::OrderFailed>());
        CHECK(outcome.Read<contracts::OrderCompleted>().order_id.str() == "o-1");
        CHECK(outcome.answer.request_id == outcome.request_id);

        const auto requests = fixture.harness.Published();
        const auto request = std::find_if(requests.begin(), requests.end(),
                                          [](const RecordedMessage& m) { return m.destination == kQueue; });
        REQUIRE(request != requests.end());
        const Json& envelope = request->envelope;
        CHECK(envelope["requestId"] == outcome.request_id);
        CHECK(envelope["responseAddress"] == fixture.bus->BusAddress());
        CHECK(envelope["sourceAddress"] == fixture.bus->BusAddress());
        CHECK(envelope["destinationAddress"] == "loopback://localhost/test-queue");
        CHECK(envelope["headers"]["MT-Request-AcceptType"] ==
              Json::array({"urn:message:Contracts:OrderCompleted", "urn:message:Contracts:OrderFailed"}));
        // A list stays in the envelope: MassTransit copies only scalar headers to AMQP.
        CHECK(Header(request->transport, "MT-Request-AcceptType") == "<missing>");
        // The timeout is the request's time to live, in the envelope and for the broker.
        REQUIRE(envelope["expirationTime"].is_string());
        const auto sent = contracts::ParseIso8601(envelope["sentTime"].get<std::string>());
        const auto expires = contracts::ParseIso8601(envelope["expirationTime"].get<std::string>());
        REQUIRE((sent && expires));
        CHECK(*expires - *sent == 5s);
        CHECK(request->transport.properties.expiration == "5000");
        // The answer was consumed at the bus's endpoint and acked; nothing was skipped or faulted.
        CHECK(fixture.harness.WaitUntil([&] {
            return fixture.loop_thread.loop().Invoke(
                [&] { return fixture.transport->UnackedCount(ResponseQueue(fixture)) == 0; });
        }));
        CHECK(fixture.Queue(SkippedQueueName(ResponseQueue(fixture))).empty());
        CHECK(fixture.Queue("fault-observer").empty());
    }

    TEST_CASE("A consumer's fault ends the request with the fault's message - the fault goes to the requester only") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext&, const contracts::StockReserved&) {
            throw std::runtime_error("out of paper");
        };
        const RequestOutcome outcome = Ask(fixture, "o-1", 5s);
        REQUIRE(outcome.kind == RequestOutcome::Kind::kFault);
        CHECK(outcome.error == "out of paper");
        CHECK(outcome.answer.message_type.at(0) == "urn:message:MassTransit:Fault[[Contracts:StockReserved]]");
        CHECK_FALSE(outcome.Is<contracts::OrderCompleted>());
        REQUIRE(fixture.WaitQueue(ErrorQueueName(kQueue), 1));
        CHECK(fixture.Queue("fault-observer").empty());
    }

    TEST_CASE("No answer in time is a timeout - a late answer and one of a type not asked for go to _skipped") {
        BusFixture fixture(RetryPolicy::None());
        fixture.handler = [&](ConsumeContext& context, const contracts::StockReserved& message) {
            if (message.order_id.str() == "o-2")
                context.Respond(contracts::StockShortage{.order_id = message.order_id, .reason = "none"});
        };
        std::promise<std::string> sent;
        auto request_id = sent.get_future();
        const auto asked = std::chrono::steady_clock::now();
        const RequestOutcome silent = Ask(fixture, "o-1", 300ms, &sent);
        CHECK(std::chrono::steady_clock::now() - asked >= 300ms);
        REQUIRE(silent.kind == RequestOutcome::Kind::kTimeout);
        CHECK(silent.request_id == request_id.get());
        CHECK(silent.error.find("300 ms") != std::string::npos);

        // The answer comes after all: no request waits for it any more.
        const std::string queue = ResponseQueue(fixture);
        fixture.loop_thread.loop().Invoke([&] {
            fixture.bus->Dispatch({fixture.bus->PrepareSend(queue, contracts::OrderCompleted{"o-1"_order_id},
                                                            {.request_id = silent.request_id})},
                                  [](const Status&) {});
        });
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Queue(SkippedQueueName(queue)).size() == 1; }));

        // StockShortage is not among the accepted types: skipped too, and the request times out.
        const RequestOutcome wrong_type = Ask(fixture, "o-2", 300ms);
        CHECK(wrong_type.kind == RequestOutcome::Kind::kTimeout);
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Queue(SkippedQueueName(queue)).size() == 2; }));
        CHECK(Json::parse(fixture.Queue(SkippedQueueName(queue)).at(1).body)["messageType"][0] ==
              "urn:message:Contracts:StockShortage");
    }

    TEST_CASE("Stopping the bus ends every waiting request as cancelled - a request after that is not sent") {
        BusFixture fixture(RetryPolicy::None());
        std::promise<std::string> sent;
        auto request_id = sent.get_future();
        auto outcome = std::async(std::launch::async, [&] { return Ask(fixture, "o-1", 30s, &sent); });
        request_id.wait();
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts.load() == 1; }));
        fixture.loop_thread.loop().Invoke([&] { fixture.bus->Stop([] {}); });
        REQUIRE(outcome.wait_for(10s) == std::future_status::ready);
        const RequestOutcome cancelled = outcome.get();
        CHECK(cancelled.kind == RequestOutcome::Kind::kCanceled);
        const auto published = fixture.harness.Published().size();
        const RequestOutcome after = Ask(fixture, "o-2", 30s);
        CHECK(after.kind == RequestOutcome::Kind::kCanceled);
        CHECK(fixture.harness.Published().size() == published);
    }
}

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

TEST_SUITE("Bus.RetryPolicy") {
    TEST_CASE("Each policy yields its delays and runs out after its limit") {
        CHECK(RetryPolicy::None().DelayBeforeRetry(1) == std::nullopt);
        CHECK(RetryPolicy::Immediate(5).DelayBeforeRetry(5) == 0ms);
        CHECK(RetryPolicy::Immediate(5).DelayBeforeRetry(6) == std::nullopt);
        CHECK(RetryPolicy::Interval(3, 500ms).DelayBeforeRetry(3) == 500ms);
        CHECK(RetryPolicy::Interval(3, 500ms).DelayBeforeRetry(4) == std::nullopt);
        const auto intervals = RetryPolicy::Intervals({100ms, 200ms});
        CHECK(intervals.Limit() == 2);
        CHECK(intervals.DelayBeforeRetry(2) == 200ms);
        const auto incremental = RetryPolicy::Incremental(3, 100ms, 50ms);
        CHECK(incremental.DelayBeforeRetry(1) == 100ms);
        CHECK(incremental.DelayBeforeRetry(3) == 200ms);
        const auto exponential = RetryPolicy::Exponential(4, 100ms, 1000ms, 100ms);
        for (int retry = 1; retry <= 4; ++retry) {
            const auto delay = exponential.DelayBeforeRetry(retry);
            REQUIRE(delay);
            CHECK(*delay >= 75ms);    // min, jittered down by at most 25%
            CHECK(*delay <= 1250ms);  // max, jittered up by at most 25%
        }
        CHECK(exponential.DelayBeforeRetry(5) == std::nullopt);
    }

    TEST_CASE("Policies are read from settings and bad ones are named") {
        CHECK(RetryPolicy::FromJson(Json::parse(R"({"Policy":"Interval","Limit":3,"IntervalMs":500})")).Describe() ==
              "Interval(3, 500ms)");
        CHECK(RetryPolicy::FromJson(Json::parse(R"({"Policy":"Intervals","IntervalsMs":[100,200]})")).Describe() ==
              "Intervals(100ms, 200ms)");
        CHECK(RetryPolicy::FromJson(RetryPolicy::Incremental(2, 10ms, 5ms).ToJson()).Describe() ==
              "Incremental(2, 10ms, 5ms)");
        CHECK_THROWS_WITH(RetryPolicy::FromJson(Json::parse(R"({"Policy":"Sometimes"})")),
                          doctest::Contains("'Sometimes'"));
        CHECK_THROWS_WITH(RetryPolicy::FromJson(Json::parse(R"({"Policy":"Interval","Limit":3})")),
                          doctest::Contains("Retry.IntervalMs"));
        CHECK_THROWS_WITH(RetryPolicy::FromJson(Json::parse(R"({"Policy":"Immediate","Limit":3,"Typo":1})")),
                          doctest::Contains("Retry.Typo"));
    }

    TEST_CASE("KillSwitch: trips at 10% of more than 100 - counts start over each period - probation") {
        using Clock = KillSwitch::Clock;
        const auto start = Clock::time_point{} + std::chrono::hours(1);
        KillSwitch kill_switch(KillSwitchSettings{.enabled = true}, start);
        // 100 messages, 20 failures: not yet active (MassTransit needs more than the threshold).
        for (int i = 0; i < 100; ++i) {
            kill_switch.OnAttempt(start);
            if (i % 5 == 0) CHECK_FALSE(kill_switch.OnFault(start));
        }
        kill_switch.OnAttempt(start);
        CHECK(kill_switch.OnFault(start));  // 21 of 101
        CHECK(kill_switch.state() == KillSwitch::State::kStopped);
        CHECK(kill_switch.Describe() == "21 of 101 messages failed within the tracking period");
        CHECK_FALSE(kill_switch.OnFault(start));  // already stopped

        // On probation one failure stops it again; more than 100 messages and a success end probation.
        kill_switch.OnRestarted(start + 60s);
        CHECK(kill_switch.state() == KillSwitch::State::kRestarting);
        for (int i = 0; i < 48; ++i) kill_switch.OnAttempt(start + 60s);
        CHECK(kill_switch.OnFault(start + 60s));
        // The log line says what tripped it: the one failure on probation, counted.
        CHECK(kill_switch.Describe() == "1 of 48 messages failed on probation, where one failure stops it again");
        kill_switch.OnRestarted(start + 120s);
        for (int i = 0; i < 101; ++i) kill_switch.OnAttempt(start + 120s);
        kill_switch.OnSuccess(start + 120s);
        CHECK(kill_switch.state() == KillSwitch::State::kStarted);

        // Below 10%: 10 of 101 does not trip; a new period forgets the old failures.
        for (int i = 0; i < 101; ++i) kill_switch.OnAttempt(start + 121s);
        for (int i = 0; i < 10; ++i) CHECK_FALSE(kill_switch.OnFault(start + 121s));
        for (int i = 0; i < 101; ++i) kill_switch.OnAttempt(start + 200s);
        CHECK_FALSE(kill_switch.OnFault(start + 200s));  // 1 of 101 in the new period
        CHECK(kill_switch.state() == KillSwitch::State::kStarted);
    }

    TEST_CASE("Kill switch: a dead database sends only the tripping share to _error - the endpoint restarts") {
        EventLoopThread loop_thread;
        TestHarness harness;
        std::unique_ptr<InMemoryTransport> transport;
        std::unique_ptr<Bus> bus;
        std::atomic<bool> database_dead{true};
        std::atomic<int> consumed{0};
        ReceiveEndpointSettings settings{
            .queue = kQueue,
            .prefetch = 16,
            .retry = RetryPolicy::None(),
            .kill_switch = {
                .enabled = true, .activation_threshold = 10, .trip_threshold = 10, .restart_timeout = 300ms}};
        loop_thread.loop().Invoke([&] {
            transport = std::make_unique<InMemoryTransport>(loop_thread.loop());
            bus = std::make_unique<Bus>(loop_thread.loop(), *transport, BusSettings{"TestService"});
            bus->AddReceiveEndpoint(settings).Handle<contracts::StockReserved>(
                "Tests.StockReservedConsumer", [&](ConsumeContext&, const contracts::StockReserved&) {
                    if (database_dead) throw std::runtime_error("database is locked");
                    ++consumed;
                });
            REQUIRE(bus->Start().ok());
            for (int i = 0; i < 40; ++i) {
                auto message = bus->PreparePublish(contracts::StockReserved{.order_id = "o-1"_order_id});
                transport->Publish(kQueue, std::move(message.message), nullptr);
            }
        });
        auto on_loop = [&](auto work) { return loop_thread.loop().Invoke(work); };
        auto tripped = [&] { return on_loop([&] { return bus->EndpointsHealth().at(0).kill_switch_tripped; }); };
        REQUIRE(harness.WaitUntil(
            [&] { return tripped() && on_loop([&] { return transport->UnackedCount(kQueue) == 0; }); }));
        // 11 failures of 11 messages trip it; the other 29 wait in the queue, not in _error.
        CHECK(on_loop([&] { return transport->ReadyCount("test-queue_error"); }) == 11);
        CHECK(on_loop([&] { return transport->ReadyCount(kQueue); }) == 29);
        CHECK_FALSE(on_loop([&] { return bus->EndpointsHealth().at(0).consuming; }));

        database_dead = false;
        REQUIRE(harness.WaitUntil([&] { return consumed == 29; }));
        CHECK(on_loop([&] { return transport->ReadyCount("test-queue_error"); }) == 11);
        CHECK_FALSE(tripped());
        CHECK(on_loop([&] { return bus->EndpointsHealth().at(0).consuming; }));
        loop_thread.loop().Invoke([&] {
            bus.reset();
            transport.reset();
        });
    }

    TEST_CASE("ConcurrentMessageLimit 2: never more than two messages in the pipeline - every one consumed") {
        EventLoopThread loop_thread;
        TestHarness harness;
        std::unique_ptr<InMemoryTransport> transport;
        std::unique_ptr<Bus> bus;
        std::mutex mutex;
        std::set<std::string> started;
        std::set<std::string> finished;
        std::size_t most_open = 0;
        loop_thread.loop().Invoke([&] {
            transport = std::make_unique<InMemoryTransport>(loop_thread.loop());
            bus = std::make_unique<Bus>(loop_thread.loop(), *transport, BusSettings{"TestService"});
            // Each message fails once and succeeds on a retry 20 ms later, so it stays in the
            // pipeline across loop turns while others arrive.
            bus->AddReceiveEndpoint({.queue = kQueue,
                                     .prefetch = 16,
                                     .retry = RetryPolicy::Interval(1, 20ms),
                                     .concurrent_message_limit = 2})
                .Handle<contracts::StockReserved>(
                    "Tests.StockReservedConsumer", [&](ConsumeContext& context, const contracts::StockReserved&) {
                        std::lock_guard lock(mutex);
                        const std::string id = context.envelope().message_id;
                        if (context.retry_attempt() == 0) {
                            started.insert(id);
                            most_open = std::max(most_open, started.size() - finished.size());
                            throw std::runtime_error("first attempt");
                        }
                        finished.insert(id);
                    });
            REQUIRE(bus->Start().ok());
            for (int i = 0; i < 8; ++i) {
                auto message = bus->PreparePublish(contracts::StockReserved{.order_id = "o-1"_order_id});
                transport->Publish(kQueue, std::move(message.message), nullptr);
            }
        });
        REQUIRE(harness.WaitUntil([&] {
            std::lock_guard lock(mutex);
            return finished.size() == 8;
        }));
        REQUIRE(harness.WaitUntil(
            [&] { return loop_thread.loop().Invoke([&] { return transport->UnackedCount(kQueue) == 0; }); }));
        std::lock_guard lock(mutex);
        CHECK(most_open == 2);
        loop_thread.loop().Invoke([&] {
            bus.reset();
            transport.reset();
        });
    }

    TEST_CASE(
        "RedeliveryLimit 1: a message that keeps coming back unsettled faults to _error - the count rides along") {
        // A retry an hour away keeps the delivery unsettled; stopping the bus returns it to the queue
        // (redelivered), as a process that died with it would.
        BusFixture fixture(RetryPolicy::Interval(1, std::chrono::hours(1)), /*redelivery_limit=*/1);
        fixture.handler = AlwaysThrow;
        auto restart_after_attempt = [&](int attempt) {
            REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts == attempt; }));
            fixture.loop_thread.loop().Invoke([&] {
                fixture.bus->Stop(nullptr);
                REQUIRE(fixture.bus->Start().ok());
            });
        };
        REQUIRE(fixture.PublishRaw("Contracts:StockReserved", fixture.Prepared({"o-1"_order_id})).ok());
        restart_after_attempt(1);
        // Back once: sent to the queue again with MT-Redelivery-Count 1, and consumed from there.
        restart_after_attempt(2);
        // Back with a count of 1: the second return passes the limit.
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        const TransportMessage copy = fixture.Queue("test-queue_error").at(0);
        CHECK(Header(copy, "MT-Fault-ExceptionType") == "messaging.RedeliveryLimitExceeded");
        CHECK(Header(copy, "MT-Fault-Message").find("came back unsettled 2 times") != std::string::npos);
        CHECK(Header(copy, "MT-Redelivery-Count") == "1");
        CHECK(fixture.attempts == 2);
        CHECK(fixture.Queue("fault-observer").size() == 1);
        CHECK(fixture.Queue(kQueue).empty());
    }

    TEST_CASE("RedeliveryLimit with a consumer journal: only the message whose consumer ended the process counts") {
        test_support::TempDir dir;
        const std::string journal = dir.File("bus-consumer");
        // A retry an hour away keeps both deliveries unsettled until the bus stops and returns them.
        BusFixture fixture(RetryPolicy::Interval(1, std::chrono::hours(1)), /*redelivery_limit=*/1, false,
                           {.service_name = "TestService", .consumer_journal_path = journal});
        fixture.handler = AlwaysThrow;
        const TransportMessage poison = fixture.Prepared({"o-poison"_order_id});
        const TransportMessage innocent = fixture.Prepared({"o-innocent"_order_id});
        const std::string poison_id = Json::parse(poison.body)["messageId"];
        REQUIRE(fixture.PublishRaw(kQueue, poison).ok());
        REQUIRE(fixture.PublishRaw(kQueue, innocent).ok());
        // Stops the bus with both unsettled, notes the poison's consumer as running, as a process
        // that ended in it leaves the journal, and starts again: both come back redelivered.
        auto end_in_poison_and_restart = [&](int attempts_before) {
            REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts == attempts_before; }));
            fixture.loop_thread.loop().Invoke([&] {
                fixture.bus->Stop(nullptr);
                ConsumerJournal(journal).Enter(ConsumerJournal::Key(kQueue, poison_id, poison.body), poison_id);
                REQUIRE(fixture.bus->Start().ok());
            });
        };
        end_in_poison_and_restart(2);
        // The poison is blamed and sent again with MT-Redelivery-Count 1; the innocent one runs again
        // uncounted.
        end_in_poison_and_restart(4);
        // The poison's second blame passes the limit; the innocent one, back twice, still runs (and
        // stays unacked, waiting for its retry).
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.Queue("test-queue_error").size() == 1; }));
        REQUIRE(fixture.harness.WaitUntil([&] { return fixture.attempts == 5; }));
        const auto errors = fixture.Queue("test-queue_error");
        REQUIRE(errors.size() == 1);
        CHECK(Json::parse(errors[0].body)["message"]["orderId"] == "o-poison");
        CHECK(Header(errors[0], "MT-Fault-ExceptionType") == "messaging.RedeliveryLimitExceeded");
        CHECK(Header(errors[0], "MT-Fault-Message").find("running when the process ended, 2 times") !=
              std::string::npos);
        CHECK(Header(errors[0], "MT-Redelivery-Count") == "1");
        // Each blame is taken once: none is left for a later return.
        CHECK(fixture.loop_thread.loop().Invoke([&] { return ConsumerJournal(journal).BlamedIds(); }).empty());
    }

    TEST_CASE("RedeliveryLimit 2 on a quorum queue: the broker's x-delivery-count decides") {
        BusFixture fixture(RetryPolicy::None(), /*redelivery_limit=*/2);
        std::atomic<int> consumed{0};
        fixture.handler = [&](ConsumeContext&, const contracts::StockReserved&) { ++consumed; };
        TransportMessage within = fixture.Prepared({"o-1"_order_id});
        within.properties.headers["x-delivery-count"] = std::int64_t{2};
        TransportMessage beyond = fixture.Prepared({"o-2"_order_id});
        beyond.properties.headers["x-delivery-count"] = std::int64_t{3};
        REQUIRE(fixture.PublishRaw(kQueue, within).ok());
        REQUIRE(fixture.PublishRaw(kQueue, beyond).ok());
        REQUIRE(fixture.WaitQueue("test-queue_error", 1));
        REQUIRE(fixture.harness.WaitUntil([&] { return consumed == 1; }));
        const auto errors = fixture.Queue("test-queue_error");
        REQUIRE(errors.size() == 1);
        CHECK(Json::parse(errors[0].body)["message"]["orderId"] == "o-2");
        CHECK(Header(errors[0], "MT-Fault-ExceptionType") == "messaging.RedeliveryLimitExceeded");
    }
}
