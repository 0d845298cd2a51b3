// A real Prometheus server (Debian's prometheus) scrapes the three services, run as processes on the
// private RabbitMQ node, while the four scenarios run; its HTTP API is then asked with PromQL, and the
// answers must be what happened. It loads prometheus/alerts.yml too: the rules are valid for a real
// server, and the one the scenarios should raise (a message moved to _error) fires.
#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <set>

#include "Broker/BrokerSupport.h"

using namespace broker_test;
using namespace std::chrono_literals;
using contracts::Json;

namespace {

// The three services as child processes, each with a database in `dir`; OrderService's API on
// `order_port`, the workers' admin listeners on theirs.
struct ServiceProcesses {
    ServiceProcesses(const ScopedVhost& vhost, const test_support::TempDir& dir, int order_port, int inventory_port,
                     int payment_port) {
        auto start = [&](const char* program, const std::string& name, std::vector<std::string> extra) {
            auto environment = vhost.SettingsEnvironment();
            environment.push_back("Database__Path=" + dir.File(name + ".db"));
            environment.insert(environment.end(), extra.begin(), extra.end());
            const std::string config = SourceDir() + "/appsettings/" + name + ".json";
            return std::make_unique<ChildProcess>(program, std::vector<std::string>{"--config", config}, environment,
                                                  dir.File(name + ".log"));
        };
        order = start(ORDER_SERVICE_BIN, "OrderService",
                      {"Http__Host=127.0.0.1", "Http__Port=" + std::to_string(order_port)});
        inventory = start(INVENTORY_SERVICE_BIN, "InventoryService", {"Admin__Port=" + std::to_string(inventory_port)});
        payment = start(PAYMENT_SERVICE_BIN, "PaymentService", {"Admin__Port=" + std::to_string(payment_port)});
    }
    std::unique_ptr<ChildProcess> order, inventory, payment;
};

// A private Prometheus server scraping the three services every second, with the shipped rules.
std::unique_ptr<ChildProcess> StartPrometheus(const test_support::TempDir& dir, int port, int order_port,
                                              int inventory_port, int payment_port) {
    const std::string config = dir.File("prometheus.yml");
    std::ofstream(config) << "global:\n"
                             "  scrape_interval: 1s\n"
                             "  evaluation_interval: 1s\n"
                             "rule_files:\n"
                             "  - "
                          << SourceDir() << "/prometheus/alerts.yml\n"
                          << "scrape_configs:\n"
                             "  - job_name: order-service\n"
                             "    static_configs: [{targets: ['127.0.0.1:"
                          << order_port << "']}]\n"
                          << "  - job_name: inventory-service\n"
                             "    static_configs: [{targets: ['127.0.0.1:"
                          << inventory_port << "']}]\n"
                          << "  - job_name: payment-service\n"
                             "    static_configs: [{targets: ['127.0.0.1:"
                          << payment_port << "']}]\n";
    return std::make_unique<ChildProcess>(
        "/usr/bin/prometheus",
        std::vector<std::string>{"--config.file=" + config, "--storage.tsdb.path=" + dir.File("tsdb"),
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port)},
        std::vector<std::string>{}, dir.File("prometheus.log"));
}

// Asks Prometheus' HTTP API; the "data" of a successful answer, null otherwise.
Json Api(httplib::Client& prometheus, const std::string& path, const httplib::Params& params = {}) {
    auto answer = prometheus.Get(path, params, httplib::Headers{});
    if (!answer || answer->status != 200) return Json();
    const Json body = Json::parse(answer->body, nullptr, false);
    return body.is_object() && body.value("status", "") == "success" ? body["data"] : Json();
}

// The value of each series of an instant query, by the value of its label `by` ("" for one without).
std::map<std::string, double> Query(httplib::Client& prometheus, const std::string& promql,
                                    const std::string& by = "") {
    std::map<std::string, double> values;
    const Json data = Api(prometheus, "/api/v1/query", {{"query", promql}});
    if (!data.is_object()) return values;
    for (const auto& series : data["result"])
        values[by.empty() ? "" : series["metric"].value(by, "")] = std::stod(series["value"][1].get<std::string>());
    return values;
}

// Whether the instant query `promql` comes to answer `expected` (series by their label `by`) within
// `timeout`: the scrapes reach Prometheus a second or so after what they count. Tells the last
// answer when it does not.
bool ComesToAnswer(httplib::Client& prometheus, const std::string& promql, const std::string& by,
                   const std::map<std::string, double>& expected, std::chrono::milliseconds timeout = 30s) {
    std::map<std::string, double> last;
    if (test_support::WaitFor([&] { return (last = Query(prometheus, promql, by)) == expected; }, timeout)) return true;
    std::string told;
    for (const auto& [label, value] : last) told += " " + label + "=" + std::to_string(value);
    MESSAGE(promql << " answered:" << (told.empty() ? " nothing" : told));
    return false;
}

}  // namespace

TEST_SUITE("Broker") {
    TEST_CASE("Prometheus: a real server scrapes the three services - PromQL answers what happened - alerts fire") {
        ScopedVhost vhost;
        test_support::TempDir dir;
        const int order_port = FreePort(), inventory_port = FreePort(), payment_port = FreePort();
        ServiceProcesses services(vhost, dir, order_port, inventory_port, payment_port);
        const int prometheus_port = FreePort();
        auto prometheus_process = StartPrometheus(dir, prometheus_port, order_port, inventory_port, payment_port);
        httplib::Client prometheus("127.0.0.1", prometheus_port);
        httplib::Client orders("127.0.0.1", order_port);

        // Every target is up, and the services are ready.
        INFO("logs in " << dir.File(""));
        REQUIRE(ComesToAnswer(prometheus, "sum(up)", "", {{"", 3}}, 60s));
        for (int port : {order_port, inventory_port, payment_port}) {
            httplib::Client service("127.0.0.1", port);
            REQUIRE(test_support::WaitFor(
                [&] {
                    auto ready = service.Get("/health/ready");
                    return ready && ready->status == 200;
                },
                30s));
        }
        // The rules are loaded as a real server reads them.
        const Json rules = Api(prometheus, "/api/v1/rules");
        REQUIRE(rules.is_object());
        std::set<std::string> alert_names;
        for (const auto& group : rules["groups"])
            for (const auto& rule : group["rules"]) alert_names.insert(rule.value("name", ""));
        CHECK(alert_names.count("MessagesMovedToErrorQueue") == 1);
        CHECK(alert_names.count("OutboxGrowing") == 1);

        // Suffixes: 3 completes, 0 has no stock, 1 is declined, 2 meets a gateway that is down.
        for (const char* id : {"prom-3", "prom-0", "prom-1", "prom-2"}) REQUIRE(PostOrder(orders, id) == 202);
        REQUIRE(test_support::WaitFor([&] { return OrderStatus(orders, "prom-3") == "Completed"; }, 30s));
        for (const char* id : {"prom-0", "prom-1", "prom-2"})
            REQUIRE(test_support::WaitFor([&] { return OrderStatus(orders, id) == "Failed"; }, 30s));

        // What a dashboard asks, answered from the scrapes once they have seen the end.
        const std::string consumed_payments =
            "sum by (messaging_masstransit_destination) "
            "(messaging_masstransit_consume_ea_total{messaging_masstransit_message_type=\"ProcessPayment\"})";
        CHECK(ComesToAnswer(prometheus, consumed_payments, "messaging_masstransit_destination",
                            {{"payment-service", 6}}));  // 1 + 1 + 4 attempts
        const std::string faults =
            "sum by (messaging_masstransit_message_type) "
            "(messaging_masstransit_send_ea_total{messaging_masstransit_message_type=~\"Fault_.*\"})";
        CHECK(ComesToAnswer(prometheus, faults, "messaging_masstransit_message_type", {{"Fault_ProcessPayment", 1}}));
        CHECK(ComesToAnswer(prometheus, "sum by (status) (orders_finished_total)", "status",
                            {{"Completed", 1}, {"Failed", 3}}));
        // Each endpoint's moves are written from the start, at 0 until one happens.
        CHECK(ComesToAnswer(prometheus, "sum by (job) (bus_messages_moved_total)", "job",
                            {{"inventory-service", 0}, {"order-service", 0}, {"payment-service", 1}}));
        // Every service's database says it is ok.
        CHECK(ComesToAnswer(prometheus, "sum by (job) (db_state{state=\"ok\"})", "job",
                            {{"inventory-service", 1}, {"order-service", 1}, {"payment-service", 1}}));
        CHECK(ComesToAnswer(prometheus,
                            "sum by (job) (http_server_request_duration_seconds_count{http_route=\"/order\","
                            "http_request_method=\"POST\",http_response_status_code=\"202\"})",
                            "job", {{"order-service", 4}}));

        // The move to payment-service_error raises its alert, labelled with the queue.
        CHECK(test_support::WaitFor(
            [&] {
                const Json alerts = Api(prometheus, "/api/v1/alerts");
                if (!alerts.is_object()) return false;
                for (const auto& alert : alerts["alerts"])
                    if (alert["labels"].value("alertname", "") == "MessagesMovedToErrorQueue" &&
                        alert["labels"].value("destination", "") == "payment-service_error" &&
                        alert.value("state", "") == "firing")
                        return true;
                return false;
            },
            30s));
        // and no other alert fires: nothing else is wrong.
        const Json alerts = Api(prometheus, "/api/v1/alerts");
        for (const auto& alert : alerts["alerts"]) {
            INFO(alert.dump());
            if (alert.value("state", "") == "firing")
                CHECK(alert["labels"].value("alertname", "") == "MessagesMovedToErrorQueue");
        }
    }
}
