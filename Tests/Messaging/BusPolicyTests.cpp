// The endpoint policies: retry policies and their settings, the kill switch, ConcurrentMessageLimit,
// and RedeliveryLimit (with the consumer journal, and with a quorum queue's x-delivery-count).
#include <doctest/doctest.h>

#include <atomic>
#include <set>

#include "Messaging/BusFixture.h"

using namespace contracts::literals;

using namespace messaging;
using namespace bus_test;
using namespace std::chrono_literals;
using contracts::Json;

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
