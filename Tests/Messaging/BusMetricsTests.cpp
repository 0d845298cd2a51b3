// MassTransit's instruments as the bus records them on the in-memory transport: what a delivery, its
// retries, its fault and what it sends add to each counter and histogram, with the names, labels and
// label values the OpenTelemetry Prometheus exporter writes for MassTransit 8.5.
#include <doctest/doctest.h>

#include "Bus/Bus.h"
#include "Metrics/MetricsRegistry.h"
#include "Support/MetricsText.h"
#include "Support/Waiting.h"
#include "Testing/TestHarness.h"
#include "Transport/InMemoryTransport.h"

using namespace contracts::literals;
using namespace messaging;
using namespace std::chrono_literals;
using test_support::SampleCount;
using test_support::SampleSum;

namespace {

// A bus recording into `registry`, with one endpoint consuming StockReserved through `handler`.
struct MeteredBus {
    MeteredBus(RetryPolicy retry, ConsumerKind kind) {
        loop_thread.loop().Invoke([&] {
            transport = std::make_unique<InMemoryTransport>(loop_thread.loop());
            bus = std::make_unique<Bus>(loop_thread.loop(), *transport,
                                        BusSettings{.service_name = "TestService", .metrics = &registry});
            harness.Observe(*bus);
            auto& endpoint = bus->AddReceiveEndpoint({.queue = "test.queue", .prefetch = 16, .retry = retry});
            endpoint.Handle<contracts::StockReserved>(
                "Tests.Nested+StockReservedConsumer",
                [this](ConsumeContext& context, const contracts::StockReserved& message) {
                    handler(context, message);
                });
            if (kind == ConsumerKind::kSaga) endpoint.CountAsSaga("Tests.Nested+StockReservedConsumer");
            REQUIRE(bus->Start().ok());
        });
    }
    ~MeteredBus() {
        loop_thread.loop().Invoke([&] {
            bus.reset();
            transport.reset();
        });
    }
    void Deliver(const contracts::StockReserved& message) {
        loop_thread.loop().Invoke([&] {
            auto prepared = bus->PreparePublish(message);
            transport->Publish(prepared.exchange, std::move(prepared.message), [](const Status&) {});
        });
    }
    bool Settled() {
        return harness.WaitUntil([&] {
            return loop_thread.loop().Invoke([&] { return transport->UnackedCount("test.queue") == 0; }) &&
                   SampleSum(registry.Render(), "messaging_masstransit_receive_ea_total") > 0 &&
                   SampleSum(registry.Render(), "messaging_masstransit_receive_active_ea_total") == 0;
        });
    }

    metrics::MetricsRegistry registry;
    EventLoopThread loop_thread;
    std::unique_ptr<InMemoryTransport> transport;
    std::unique_ptr<Bus> bus;
    TestHarness harness;
    std::function<void(ConsumeContext&, const contracts::StockReserved&)> handler;
};

const std::pair<std::string, std::string> kConsumer{"messaging_masstransit_consumer_type", "StockReservedConsumer"};
const std::pair<std::string, std::string> kMessage{"messaging_masstransit_message_type", "StockReserved"};
const std::pair<std::string, std::string> kFailed{"messaging_masstransit_exception_type", "runtime_error"};

}  // namespace

TEST_SUITE("BusMetrics") {
    TEST_CASE("Labels as MassTransit writes them: types without namespaces - generics joined by _") {
        CHECK(MessageTypeLabel("urn:message:Contracts:OrderSubmitted") == "OrderSubmitted");
        CHECK(MessageTypeLabel("urn:message:MassTransit:Fault[[Contracts:ProcessPayment]]") == "Fault_ProcessPayment");
        CHECK(MessageTypeLabelOfExchange("Contracts:OrderSubmitted") == "OrderSubmitted");
        CHECK(MessageTypeLabelOfExchange("MassTransit:Fault--Contracts:ProcessPayment--") == "Fault_ProcessPayment");
        CHECK(MessageTypeLabelOfExchange("payment-service") == "payment-service");
        CHECK(TypeNameWithoutNamespace("Inventory.CheckInventoryConsumer") == "CheckInventoryConsumer");
        CHECK(TypeNameWithoutNamespace("Tests.Nested+StockReservedConsumer") == "StockReservedConsumer");
        CHECK(TypeNameWithoutNamespace("Orders.OrderState") == "OrderState");
    }

    TEST_CASE(
        "A consumer that fails twice and then publishes: 1 receive - 3 consumes - 2 retries - 2 errors - 1 send") {
        MeteredBus bus(RetryPolicy::Interval(3, 10ms), ConsumerKind::kConsumer);
        bus.handler = [](ConsumeContext& context, const contracts::StockReserved& message) {
            if (context.retry_attempt() < 2) throw std::runtime_error("transient");
            context.Publish(contracts::OrderCompleted{.order_id = message.order_id});
        };
        bus.Deliver({"o-1"_order_id});
        REQUIRE(bus.Settled());
        const std::string text = bus.registry.Render();

        // The receive, written exactly as the exporter writes MassTransit's ('.' in a queue name as '_').
        CHECK(text.find("messaging_masstransit_receive_ea_total{otel_scope_name=\"MassTransit\",otel_scope_version="
                        "\"8.5.12.0\",messaging_masstransit_destination=\"test_queue\",messaging_masstransit_service="
                        "\"TestService\"} 1\n") != std::string::npos);
        CHECK(SampleSum(text, "messaging_masstransit_receive_duration_milliseconds_count") == 1);
        CHECK(SampleSum(text, "messaging_masstransit_receive_errors_ea_total") == 0);

        // Every attempt is a consume; the two that threw are errors labelled with the exception's type.
        CHECK(SampleSum(text, "messaging_masstransit_consume_ea_total", {kConsumer, kMessage}) == 3);
        CHECK(SampleSum(text, "messaging_masstransit_consume_retries_ea_total", {kConsumer, kMessage}) == 2);
        CHECK(SampleSum(text, "messaging_masstransit_consume_errors_ea_total", {kConsumer, kMessage, kFailed}) == 2);
        CHECK(SampleSum(text, "messaging_masstransit_consume_duration_milliseconds_count", {kFailed}) == 2);
        CHECK(SampleSum(text, "messaging_masstransit_consume_duration_milliseconds_count") == 3);
        CHECK(SampleSum(text, "messaging_masstransit_delivery_duration_milliseconds_count", {kMessage}) == 3);
        CHECK(SampleSum(text, "messaging_masstransit_consume_active_ea_total") == 0);
        CHECK(SampleSum(text, "messaging_masstransit_saga_ea_total") == 0);
        // Histograms have MassTransit's (OpenTelemetry's default) buckets.
        CHECK(SampleCount(text, "messaging_masstransit_consume_duration_milliseconds_bucket", {{"le", "7500"}}) == 2);

        // A publish is counted as a send to the message type's exchange.
        CHECK(SampleSum(text, "messaging_masstransit_send_ea_total",
                        {{"messaging_masstransit_destination", "Contracts:OrderCompleted"},
                         {"messaging_masstransit_message_type", "OrderCompleted"}}) == 1);
        CHECK(SampleSum(text, "bus_messages_moved_total") == 0);
    }

    TEST_CASE("A consumer that gives up: its Fault is sent - the move to _error is counted") {
        MeteredBus bus(RetryPolicy::Immediate(1), ConsumerKind::kConsumer);
        bus.handler = [](ConsumeContext&, const contracts::StockReserved&) { throw std::runtime_error("boom"); };
        bus.Deliver({"o-2"_order_id});
        REQUIRE(bus.Settled());
        const std::string text = bus.registry.Render();
        CHECK(SampleSum(text, "messaging_masstransit_consume_ea_total") == 2);
        CHECK(SampleSum(text, "messaging_masstransit_consume_errors_ea_total", {kFailed}) == 2);
        CHECK(SampleSum(text, "messaging_masstransit_send_ea_total",
                        {{"messaging_masstransit_destination", "MassTransit:Fault--Contracts:StockReserved--"},
                         {"messaging_masstransit_message_type", "Fault_StockReserved"}}) == 1);
        CHECK(SampleSum(text, "bus_messages_moved_total",
                        {{"queue", "test.queue"}, {"destination", "test.queue_error"}, {"service", "TestService"}}) ==
              1);
    }

    TEST_CASE("A saga's events count as saga - not as consume") {
        MeteredBus bus(RetryPolicy::None(), ConsumerKind::kSaga);
        bus.handler = [](ConsumeContext&, const contracts::StockReserved&) {};
        bus.Deliver({"o-3"_order_id});
        REQUIRE(bus.Settled());
        const std::string text = bus.registry.Render();
        CHECK(SampleSum(text, "messaging_masstransit_saga_ea_total", {kConsumer, kMessage}) == 1);
        CHECK(SampleSum(text, "messaging_masstransit_saga_duration_milliseconds_count") == 1);
        CHECK(SampleSum(text, "messaging_masstransit_saga_active_ea_total") == 0);
        CHECK(SampleSum(text, "messaging_masstransit_consume_ea_total") == 0);
        CHECK(SampleSum(text, "messaging_masstransit_delivery_duration_milliseconds_count") == 0);
    }
}
