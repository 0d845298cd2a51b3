// Metrics against the real RabbitMQ node: the four scenarios run through the three services, then
// each service's metrics count what happened, in MassTransit's instruments, and promtool finds in them
// only what it finds in MassTransit's own (its durations are in milliseconds, not seconds).
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>

#include "Broker/BrokerSupport.h"
#include "Support/MetricsText.h"

using namespace broker_test;
using namespace std::chrono_literals;
using test_support::SampleSum;

namespace {

using Label = std::pair<std::string, std::string>;

Label MessageType(const std::string& type) {
    return {"messaging_masstransit_message_type", type};
}

// What `promtool check metrics` says of `text`, and its exit code.
std::pair<int, std::string> Promtool(const std::string& text, const test_support::TempDir& dir) {
    const std::string path = dir.File("metrics.txt");
    std::ofstream(path) << text;
    FILE* pipe = popen(("promtool check metrics < " + path + " 2>&1").c_str(), "r");
    REQUIRE_MESSAGE(pipe,
                    "promtool could not be run (Debian's prometheus package, installed by scripts/install-deps.sh)");
    std::string output;
    char buffer[512];
    while (std::fgets(buffer, sizeof buffer, pipe)) output += buffer;
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// promtool's findings, but for the one it makes on MassTransit's own output: its histograms are in
// milliseconds where Prometheus' convention is seconds. Ours keep MassTransit's names, so a shop's
// dashboards read them unchanged; anything else promtool says is a finding.
std::string UnexpectedFindings(const std::string& output) {
    std::string unexpected;
    std::size_t start = 0;
    while (start < output.size()) {
        const auto end = output.find('\n', start);
        const std::string line = output.substr(start, end == std::string::npos ? std::string::npos : end - start);
        start = end == std::string::npos ? output.size() : end + 1;
        if (line.empty()) continue;
        const bool masstransit_unit =
            line.rfind("messaging_masstransit_", 0) == 0 &&
            line.find("_milliseconds use base unit \"seconds\" instead of \"milliseconds\"") != std::string::npos;
        if (!masstransit_unit) unexpected += line + "\n";
    }
    return unexpected;
}

}  // namespace

TEST_SUITE("Broker") {
    TEST_CASE("Metrics: the four scenarios - each service counts them as MassTransit does - promtool agrees") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        BrokerSystem system(vhost, {.start_http = true});
        httplib::Client client("127.0.0.1", system.http_port());
        // Suffixes: 3 completes, 0 has no stock, 1 is declined, 2 meets a gateway that is down.
        for (const char* id : {"metrics-3", "metrics-0", "metrics-1", "metrics-2"})
            REQUIRE(PostOrder(client, id) == 202);
        REQUIRE(system.WaitForStatus("metrics-3", order_service::OrderStatus::kCompleted));
        for (const char* id : {"metrics-0", "metrics-1", "metrics-2"})
            REQUIRE(system.WaitForStatus(id, order_service::OrderStatus::kFailed));
        // Rendered on the loop, as the services answer /metrics: the health gauges read the bus.
        auto payment_text = [&] { return system.loop().Invoke([&] { return system.payment().metrics()->Render(); }); };
        REQUIRE(test_support::WaitFor([&] { return SampleSum(payment_text(), "bus_messages_moved_total") == 1; }, 20s));

        // OrderService's metrics, as a scrape of its API port reads them.
        auto scrape = client.Get("/metrics");
        REQUIRE(scrape);
        CHECK(scrape->status == 200);
        CHECK(scrape->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
        const std::string orders = scrape->body;
        const std::string saga = "messaging_masstransit_saga_ea_total";
        const Label order_state{"messaging_masstransit_consumer_type", "OrderState"};
        const Label order_queue{"messaging_masstransit_destination", "order-service"};
        CHECK(SampleSum(orders, saga, {order_state, order_queue, MessageType("OrderSubmitted")}) == 4);
        CHECK(SampleSum(orders, saga, {MessageType("StockReserved")}) == 3);
        CHECK(SampleSum(orders, saga, {MessageType("StockShortage")}) == 1);
        CHECK(SampleSum(orders, saga, {MessageType("PaymentAccepted")}) == 1);
        CHECK(SampleSum(orders, saga, {MessageType("PaymentFailed")}) == 1);
        CHECK(SampleSum(orders, saga, {MessageType("Fault_ProcessPayment")}) == 1);
        CHECK(SampleSum(orders, "messaging_masstransit_saga_errors_ea_total") == 0);
        CHECK(SampleSum(orders, "messaging_masstransit_consume_ea_total") == 0);
        const std::string send = "messaging_masstransit_send_ea_total";
        CHECK(SampleSum(orders, send, {MessageType("OrderSubmitted")}) == 4);
        CHECK(SampleSum(orders, send, {MessageType("CheckInventory")}) == 4);
        CHECK(SampleSum(orders, send,
                        {{"messaging_masstransit_destination", "Contracts:ProcessPayment"},
                         MessageType("ProcessPayment")}) == 3);
        CHECK(SampleSum(orders, send, {MessageType("OrderCompleted")}) == 1);
        CHECK(SampleSum(orders, send, {MessageType("OrderFailed")}) == 3);
        CHECK(SampleSum(orders, send, {MessageType("ReleaseStock")}) == 2);
        // No saga event was retried: one receive per saga run.
        CHECK(SampleSum(orders, "messaging_masstransit_receive_ea_total", {order_queue}) == SampleSum(orders, saga));
        CHECK(SampleSum(orders, "messaging_masstransit_receive_active_ea_total") == 0);

        // PaymentService: 1 + 1 + 4 attempts (three retries of the faulting one), which moves to _error.
        const std::string payments = payment_text();
        const Label payment_consumer{"messaging_masstransit_consumer_type", "ProcessPaymentConsumer"};
        CHECK(SampleSum(payments, "messaging_masstransit_consume_ea_total",
                        {payment_consumer, MessageType("ProcessPayment")}) == 6);
        CHECK(SampleSum(payments, "messaging_masstransit_consume_retries_ea_total", {payment_consumer}) == 3);
        CHECK(SampleSum(payments, "messaging_masstransit_consume_errors_ea_total",
                        {payment_consumer, {"messaging_masstransit_exception_type", "PaymentGatewayUnavailable"}}) ==
              4);
        CHECK(SampleSum(payments, "messaging_masstransit_receive_ea_total",
                        {{"messaging_masstransit_destination", "payment-service"}}) == 3);
        CHECK(SampleSum(payments, "messaging_masstransit_send_ea_total", {MessageType("Fault_ProcessPayment")}) == 1);
        CHECK(SampleSum(payments, "messaging_masstransit_send_ea_total", {MessageType("PaymentAccepted")}) == 1);
        CHECK(SampleSum(payments, "messaging_masstransit_send_ea_total", {MessageType("PaymentFailed")}) == 1);
        CHECK(SampleSum(payments, "bus_messages_moved_total", {{"destination", "payment-service_error"}}) == 1);
        // Its health as gauges: connected, consuming, the kill switch not tripped, nothing refused.
        CHECK(SampleSum(payments, "bus_broker_state", {{"state", "connected"}}) == 1);
        CHECK(SampleSum(payments, "bus_broker_state") == 1);
        CHECK(SampleSum(payments, "bus_endpoint_consuming", {{"queue", "payment-service"}}) == 1);
        CHECK(SampleSum(payments, "bus_endpoint_kill_switch_tripped", {{"queue", "payment-service"}}) == 0);
        CHECK(test_support::SampleCount(payments, "bus_refused_queues", {{"service", "PaymentService"}}) == 1);
        CHECK(SampleSum(payments, "bus_refused_queues") == 0);

        // InventoryService: a check per order, a release per failed order that reserved stock.
        const std::string inventory = system.loop().Invoke([&] { return system.inventory().metrics()->Render(); });
        CHECK(SampleSum(inventory, "messaging_masstransit_consume_ea_total", {MessageType("CheckInventory")}) == 4);
        CHECK(SampleSum(inventory, "messaging_masstransit_consume_ea_total", {MessageType("ReleaseStock")}) == 2);
        CHECK(SampleSum(inventory, "messaging_masstransit_consume_errors_ea_total") == 0);

        // What MassTransit does not tell. The orders, by final status and by the event that decided
        // them; the saga rows left (a failed order's row stays, a completed order's is deleted).
        const std::string finished = "orders_finished_total";
        CHECK(SampleSum(orders, finished, {{"status", "Completed"}, {"cause", "PaymentAccepted"}}) == 1);
        CHECK(SampleSum(orders, finished, {{"status", "Failed"}, {"cause", "StockShortage"}}) == 1);
        CHECK(SampleSum(orders, finished, {{"status", "Failed"}, {"cause", "PaymentFailed"}}) == 1);
        CHECK(SampleSum(orders, finished, {{"status", "Failed"}, {"cause", "Fault<ProcessPayment>"}}) == 1);
        CHECK(SampleSum(orders, finished) == 4);
        CHECK(SampleSum(orders, "order_saga_instances", {{"state", "Failed"}}) == 3);
        CHECK(SampleSum(orders, "order_saga_instances") == 3);
        CHECK(SampleSum(orders, "order_timeouts_pending") == 0);
        CHECK(test_support::SampleCount(orders, "order_outbox_rows") == 1);
        CHECK(test_support::SampleCount(orders, "order_outbox_oldest_age_seconds") == 1);
        // Every message written to the outbox goes once confirmed.
        CHECK(test_support::WaitFor(
            [&] {
                auto again = client.Get("/metrics");
                return again && SampleSum(again->body, "order_outbox_rows") == 0 &&
                       SampleSum(again->body, "order_outbox_oldest_age_seconds") == 0;
            },
            10s));
        // Group commit: each batch's units and its COMMIT's duration, in every service.
        for (const std::string* text : {&orders, &payments}) {
            CHECK(SampleSum(*text, "db_commit_batch_units_count") > 0);
            CHECK(SampleSum(*text, "db_commit_batch_units_sum") > 0);  // a batch of failed attempts holds none
            CHECK(SampleSum(*text, "db_commit_duration_seconds_count") ==
                  SampleSum(*text, "db_commit_batch_units_count"));
            CHECK(SampleSum(*text, "db_commit_failures_total") == 0);
            CHECK(SampleSum(*text, "bus_broker_blocked_seconds_total") == 0);
        }
        // The HTTP requests, by route and status, as ASP.NET Core's meter names them.
        const std::string http = "http_server_request_duration_seconds_count";
        CHECK(SampleSum(orders, http,
                        {{"http_request_method", "POST"},
                         {"http_route", "/order"},
                         {"http_response_status_code", "202"},
                         {"network_protocol_version", "1.1"},
                         {"url_scheme", "http"}}) == 4);
        CHECK(SampleSum(orders, http) == 4);  // this scrape is counted once it is answered
        CHECK(client.Get("/order/metrics-3")->status == 200);
        CHECK(client.Get("/nowhere")->status == 404);
        const std::string later = client.Get("/metrics")->body;
        CHECK(SampleSum(later, http, {{"http_route", "/order/{orderId}"}, {"http_response_status_code", "200"}}) == 1);
        CHECK(SampleSum(later, http, {{"http_route", "/metrics"}}) >= 1);
        CHECK(test_support::SampleCount(later, http, {{"http_response_status_code", "404"}}) == 1);
        CHECK(later.find("http_route=\"/nowhere\"") == std::string::npos);
        for (const std::string* text : {&orders, &payments, &inventory}) {
            const auto [code, output] = Promtool(*text, dir);
            INFO(output);
            CHECK((code == 0 || code == 3));  // 3: lint findings only
            CHECK(UnexpectedFindings(output).empty());
        }
    }
}
