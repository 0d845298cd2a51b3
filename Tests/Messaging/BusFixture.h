// The bus test suites' fixture: a bus on the in-memory transport with one endpoint consuming
// StockReserved through a handler the test sets, an observer of MassTransit:Fault, and helpers to read
// queues and headers and to send requests.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "Support/Waiting.h"
#include "Testing/TestHarness.h"
#include "Transport/InMemoryTransport.h"

namespace bus_test {

using namespace messaging;
using namespace std::chrono_literals;

inline constexpr const char* kQueue = "test-queue";

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

inline std::string Header(const TransportMessage& message, const std::string& name) {
    const auto* value = FindHeader(message.properties.headers, name);
    return value ? HeaderToString(*value) : std::string("<missing>");
}

inline void AlwaysThrow(ConsumeContext&, const contracts::StockReserved&) {
    throw std::runtime_error("boom");
}

// Sends a request for `order_id` from the loop, accepting OrderCompleted or OrderFailed, and waits for
// its outcome; `sent` receives the request id as soon as it is known.
inline RequestOutcome Ask(BusFixture& fixture, const char* order_id, std::chrono::milliseconds timeout,
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

inline std::string ResponseQueue(BusFixture& fixture) {
    return ExchangeOfAddress(fixture.bus->BusAddress());
}

}  // namespace bus_test
