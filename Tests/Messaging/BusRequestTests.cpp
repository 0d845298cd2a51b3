// The request client on the in-memory transport: answers by requestId, faults, timeouts and late
// answers, and requests that end when the bus stops.
#include <doctest/doctest.h>

#include "Messaging/BusFixture.h"

using namespace contracts::literals;

using namespace messaging;
using namespace bus_test;
using namespace std::chrono_literals;
using contracts::Json;

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
