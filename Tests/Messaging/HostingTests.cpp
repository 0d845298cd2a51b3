// Hosting: the settings loader (.NET-style overrides, unknown keys rejected) and each service's settings.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "Hosting/Settings.h"
#include "InventoryService/InventorySettings.h"
#include "OrderService/OrderSettings.h"
#include "PaymentService/PaymentSettings.h"
#include "Support/Waiting.h"

using namespace messaging;
using namespace std::chrono_literals;
using contracts::Json;

TEST_SUITE("Hosting.Settings") {
    const Json kDefaults = Json::parse(
        R"({"RabbitMQ":{"Host":"localhost","Port":5672},"Endpoint":{"Retry":{"Policy":"None"}},"Flag":false})");

    TEST_CASE("Log lines carry the fields of the current LogScope - trace and order - and nothing outside one") {
        std::ostringstream out;
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
        sink->set_formatter(LogFormatter("order-service"));
        spdlog::logger logger("scope-test", sink);
        logger.info("outside");
        LogFields fields;
        fields.Set(kTraceLogField, "4bf92f3577b34da6a3ce929d0e0e4736");
        {
            LogScope scope(fields);
            fields.Set(contracts::kOrderLogField, "o-1");
            logger.warn("inside");
            LogFields inner;
            inner.Set(kTraceLogField, "other");
            {
                LogScope nested(inner);
                logger.info("nested");
            }
            logger.info("after nested");
        }
        logger.info("after");
        INFO(out.str());
        std::istringstream lines(out.str());
        std::vector<std::string> tails;  // each line after its timestamp
        for (std::string line; std::getline(lines, line);) tails.push_back(line.substr(line.find(' ') + 1));
        CHECK(tails == std::vector<std::string>{
                           "info  order-service outside",
                           "warning order-service trace=4bf92f3577b34da6a3ce929d0e0e4736 order=o-1 inside",
                           "info  order-service trace=other nested",
                           "info  order-service trace=4bf92f3577b34da6a3ce929d0e0e4736 order=o-1 after nested",
                           "info  order-service after"});
    }

    TEST_CASE("Logging.Format Json - one JSON object a line with the scope's ids under their own names") {
        std::ostringstream out;
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
        sink->set_formatter(JsonLogFormatter("PaymentService"));
        spdlog::logger logger("json-test", sink);
        logger.set_level(spdlog::level::debug);
        logger.info("outside");
        LogFields fields;
        fields.Set(kTraceLogField, "4bf92f3577b34da6a3ce929d0e0e4736");
        fields.Set(kMessageLogField, "0a1b0000-5d4c-0015-b8d6-08dd1a2b3c4d");
        fields.Set(contracts::kOrderLogField, "o-1");
        fields.Set("tenant", "acme");
        {
            LogScope scope(fields);
            logger.warn("payment of {} \"declined\"\n{}", "10.00", std::string("\xff bytes"));
        }
        INFO(out.str());
        std::istringstream lines(out.str());
        std::vector<contracts::OrderedJson> parsed;
        for (std::string line; std::getline(lines, line);) {
            parsed.push_back(contracts::OrderedJson::parse(line, nullptr, false));
            REQUIRE_FALSE(parsed.back().is_discarded());
        }
        REQUIRE(parsed.size() == 2);
        CHECK(parsed[0]["level"] == "info");
        CHECK(parsed[0]["service"] == "PaymentService");
        CHECK(parsed[0]["message"] == "outside");
        CHECK_FALSE(parsed[0].contains("traceId"));
        // The time as MassTransit writes times: UTC, ISO 8601.
        CHECK(contracts::ParseIso8601(parsed[0]["time"].get<std::string>()).has_value());
        std::vector<std::string> keys;
        for (const auto& item : parsed[1].items()) keys.push_back(item.key());
        CHECK(keys == std::vector<std::string>{"time", "level", "service", "traceId", "messageId", "orderId", "tenant",
                                               "message"});
        CHECK(parsed[1]["level"] == "warning");
        CHECK(parsed[1]["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736");
        CHECK(parsed[1]["messageId"] == "0a1b0000-5d4c-0015-b8d6-08dd1a2b3c4d");
        CHECK(parsed[1]["orderId"] == "o-1");
        CHECK(parsed[1]["tenant"] == "acme");
        // A newline and quotes stay inside the one line; bytes that are not UTF-8 are replaced.
        CHECK(parsed[1]["message"] == "payment of 10.00 \"declined\"\n\xef\xbf\xbd bytes");
    }

    TEST_CASE("Logging.Format is Text or Json - anything else is refused by name") {
        using order_service::OrderSettings;
        CHECK(OrderSettings::Load("", {}).log_format == LogFormat::kText);
        CHECK(OrderSettings::Load("", {"Logging__Format=json"}).log_format == LogFormat::kJson);
        try {
            OrderSettings::Load("", {"Logging__Format=Xml"});
            FAIL("Logging.Format=Xml was accepted");
        } catch (const SettingsError& e) {
            CHECK(std::string(e.what()).find("Logging.Format") != std::string::npos);
        }
    }

    TEST_CASE("The file overrides defaults and the environment overrides the file") {
        test_support::TempDir dir;
        std::ofstream(dir.File("s.json")) << R"({"rabbitmq": {"host": "from-file"}, // comments are allowed
                                                  "Endpoint": {"Retry": {"Policy": "Immediate", "Limit": 2}}})";
        const Json settings = LoadSettingsJson(
            kDefaults,
            {dir.File("s.json"), {"RabbitMQ__Port=5673", "PATH=/bin", "Other__X=1", "Flag=true"}, {"Retry"}});
        CHECK(settings["RabbitMQ"]["Host"] == "from-file");
        CHECK(settings["RabbitMQ"]["Port"] == 5673);
        CHECK(settings["Endpoint"]["Retry"]["Limit"] == 2);
        CHECK(settings["Flag"] == false);  // no "__": not a settings variable
        const Json from_env = LoadSettingsJson(kDefaults, {"", {"rabbitmq__HOST=broker"}, {}});
        CHECK(from_env["RabbitMQ"]["Host"] == "broker");
    }

    TEST_CASE("Unknown keys and wrong types stop the load with the key named") {
        test_support::TempDir dir;
        std::ofstream(dir.File("typo.json")) << R"({"RabbitMQ": {"Hots": "x"}})";
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {dir.File("typo.json"), {}, {}}),
                             doctest::Contains("unknown setting 'RabbitMQ.Hots'"), SettingsError);
        std::ofstream(dir.File("type.json")) << R"({"RabbitMQ": {"Port": "5672"}})";
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {dir.File("type.json"), {}, {}}),
                             doctest::Contains("'RabbitMQ.Port' must be an integer"), SettingsError);
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {"", {"RabbitMQ__Port=abc"}, {}}),
                             doctest::Contains("RabbitMQ__Port must be an integer"), SettingsError);
        CHECK_THROWS_WITH_AS(LoadSettingsJson(kDefaults, {"", {"RabbitMQ__Nope=1"}, {}}),
                             doctest::Contains("unknown setting 'Nope'"), SettingsError);
        CHECK_THROWS_AS(LoadSettingsJson(kDefaults, {dir.File("missing.json"), {}, {}}), SettingsError);
    }

    TEST_CASE("The committed appsettings files load and match the settings structs field for field") {
        const std::string root = SAGA_SOURCE_DIR "/appsettings/";
        const auto order = order_service::OrderSettings::Load(root + "OrderService.json", {});
        CHECK(order.endpoint.queue == "order-service");
        CHECK(order.endpoint.retry.Describe() == "Interval(3, 500ms)");
        CHECK(order.saga.timeout == 300000ms);
        const auto inventory = inventory_service::InventorySettings::Load(root + "InventoryService.json", {});
        CHECK(inventory.endpoint.queue == "inventory-service");
        CHECK(inventory.simulation.shortage_suffixes == "0");
        const auto payment = payment_service::PaymentSettings::Load(root + "PaymentService.json", {});
        CHECK(payment.endpoint.queue == "payment-service");
        CHECK(payment.simulation.gateway_down_suffixes == "2");
        // Field for field: the file holds every key the struct has.
        for (const auto& [file, defaults] : std::vector<std::pair<std::string, Json>>{
                 {"OrderService.json", Json::parse(order_service::OrderSettings{}.ToJson().dump())},
                 {"InventoryService.json", Json::parse(inventory_service::InventorySettings{}.ToJson().dump())},
                 {"PaymentService.json", Json::parse(payment_service::PaymentSettings{}.ToJson().dump())}}) {
            std::ifstream in(root + file);
            const Json committed = Json::parse(in, nullptr, true, true);
            for (auto section = defaults.begin(); section != defaults.end(); ++section) {
                REQUIRE_MESSAGE(committed.contains(section.key()), file << " lacks " << section.key());
                for (auto key = section->begin(); key != section->end(); ++key)
                    CHECK_MESSAGE(committed[section.key()].contains(key.key()),
                                  file << " lacks " << section.key() << "." << key.key());
            }
        }
    }

    TEST_CASE("Environment overrides reach the typed settings") {
        const auto settings = order_service::OrderSettings::Load(
            "", {"RabbitMQ__Host=rabbit", "Http__Port=8080", R"(Endpoint__Retry={"Policy":"Immediate","Limit":1})"});
        CHECK(settings.rabbitmq.host == "rabbit");
        CHECK(settings.http.port == 8080);
        CHECK(settings.endpoint.retry.Describe() == "Immediate(1)");
        CHECK_THROWS_WITH_AS(order_service::OrderSettings::Load("", {"Database__Synchronous=sometimes"}),
                             doctest::Contains("Database.Synchronous"), SettingsError);
        CHECK_THROWS_WITH_AS(order_service::OrderSettings::Load("", {"Http__Port=70000"}), doctest::Contains("'Port'"),
                             SettingsError);
    }

    TEST_CASE("RabbitMQ.Hosts lists a cluster's nodes - as JSON or by index as .NET binds them") {
        const auto single =
            payment_service::PaymentSettings::Load("", {"RabbitMQ__Host=rabbit", "RabbitMQ__Port=5673"});
        CHECK(single.rabbitmq.hosts.empty());
        REQUIRE(single.rabbitmq.Nodes().size() == 1);
        CHECK(single.rabbitmq.Nodes()[0].ToString() == "rabbit:5673");

        // By index, as RabbitMQ__Hosts__0 in a .NET service's environment; a node without a port takes Port.
        const auto indexed = payment_service::PaymentSettings::Load(
            "", {"RabbitMQ__Port=5673", "RabbitMQ__Hosts__0=node-a", "RabbitMQ__Hosts__1=node-b:5680",
                 "RabbitMQ__Hosts__2=10.0.0.3"});
        std::vector<std::string> nodes;
        for (const auto& node : indexed.rabbitmq.Nodes()) nodes.push_back(node.ToString());
        CHECK(nodes == std::vector<std::string>{"node-a:5673", "node-b:5680", "10.0.0.3:5673"});
        CHECK(Json::parse(RabbitMqSettingsToJson(indexed.rabbitmq).dump())["Hosts"] ==
              Json::array({"node-a", "node-b:5680", "10.0.0.3"}));

        const auto json = payment_service::PaymentSettings::Load("", {R"(RabbitMQ__Hosts=["a:1","b:2"])"});
        REQUIRE(json.rabbitmq.Nodes().size() == 2);
        CHECK(json.rabbitmq.Nodes()[1].ToString() == "b:2");

        // A node that cannot be connected to stops the load, named; so does a gap in the indexes.
        for (const char* bad : {"RabbitMQ__Hosts__0=node-a:http", "RabbitMQ__Hosts__0=:5672",
                                "RabbitMQ__Hosts__0=node-a:70000", "RabbitMQ__Hosts__1=node-b"})
            CHECK_THROWS_WITH_AS(payment_service::PaymentSettings::Load("", {bad}), doctest::Contains("RabbitMQ.Hosts"),
                                 SettingsError);
        CHECK_THROWS_WITH_AS(payment_service::PaymentSettings::Load("", {"RabbitMQ__Hosts__x=node-a"}),
                             doctest::Contains("not an index"), SettingsError);
    }
    TEST_CASE("Endpoint.Serializer RawJson turns raw JSON on - Envelope is the default - anything else is refused") {
        CHECK_FALSE(inventory_service::InventorySettings::Load("", {}).endpoint.raw_json);
        const auto raw = inventory_service::InventorySettings::Load("", {"Endpoint__Serializer=RawJson"});
        CHECK(raw.endpoint.raw_json);
        CHECK(Json::parse(EndpointSettingsToJson(raw.endpoint).dump())["Serializer"] == "RawJson");
        CHECK_THROWS_WITH_AS(inventory_service::InventorySettings::Load("", {"Endpoint__Serializer=Xml"}),
                             doctest::Contains("Endpoint.Serializer"), SettingsError);
    }

    TEST_CASE("Endpoint.QueueType Quorum gives SetQuorumQueue's arguments - QueueArguments add their own") {
        const auto classic = payment_service::PaymentSettings::Load("", {});
        CHECK(classic.endpoint.queue_arguments.empty());

        const auto quorum = payment_service::PaymentSettings::Load(
            "", {"Endpoint__QueueType=Quorum", "Endpoint__QuorumInitialGroupSize=3",
                 R"(Endpoint__QueueArguments={"x-delivery-limit": 20, "x-max-priority": 5})"});
        const HeaderTable expected = {{"x-queue-type", std::string("quorum")},
                                      {"x-quorum-initial-group-size", std::int32_t{3}},
                                      {"x-delivery-limit", std::int32_t{20}}};  // no x-max-priority on quorum
        CHECK(quorum.endpoint.queue_arguments == expected);
        // Written back, the settings read the same.
        const auto json = Json::parse(EndpointSettingsToJson(quorum.endpoint).dump());
        CHECK(json["QueueType"] == "Quorum");
        CHECK(EndpointSettingsFromJson(json).queue_arguments == expected);

        CHECK_THROWS_WITH_AS(payment_service::PaymentSettings::Load("", {"Endpoint__QueueType=Stream"}),
                             doctest::Contains("Endpoint.QueueType"), SettingsError);
        CHECK_THROWS_WITH_AS(payment_service::PaymentSettings::Load("", {"Endpoint__QuorumInitialGroupSize=3"}),
                             doctest::Contains("Quorum"), SettingsError);
        CHECK_THROWS_WITH_AS(
            payment_service::PaymentSettings::Load("", {R"(Endpoint__QueueArguments={"max-length": 1})"}),
            doctest::Contains("start with 'x-'"), SettingsError);
        CHECK_THROWS_WITH_AS(
            payment_service::PaymentSettings::Load("", {R"(Endpoint__QueueArguments={"x-max-length": 1.5})"}),
            doctest::Contains("x-max-length"), SettingsError);
    }

    TEST_CASE("the consumer journal lives beside the database - none for an in-memory one") {
        CHECK(ConsumerJournalPath({.path = "/var/lib/saga/payments.db"}) == "/var/lib/saga/payments.db-consumer");
        CHECK(ConsumerJournalPath({.path = ":memory:"}).empty());
        CHECK(ConsumerJournalPath({.path = "file:payments?mode=memory"}).empty());
    }

    TEST_CASE("A service's bus settings: its name - the journal beside its database - Tracing.Propagate") {
        const auto defaults = payment_service::PaymentSettings::Load("", {"Database__Path=/srv/payments.db"});
        const BusSettings bus = defaults.BusSettingsFor("PaymentService");
        CHECK(bus.service_name == "PaymentService");
        CHECK(bus.consumer_journal_path == "/srv/payments.db-consumer");
        CHECK(bus.propagate_trace);
        const auto untraced = order_service::OrderSettings::Load("", {"Tracing__Propagate=false"});
        CHECK_FALSE(untraced.BusSettingsFor("OrderService").propagate_trace);
        CHECK(Json::parse(untraced.ToJson().dump())["Tracing"]["Propagate"] == false);
        CHECK_THROWS_WITH_AS(order_service::OrderSettings::Load("", {"Tracing__Propagate=sometimes"}),
                             doctest::Contains("Tracing__Propagate must be true or false"), SettingsError);
    }

    TEST_CASE(
        "Endpoint.ConcurrentMessageLimit and Endpoint.KillSwitch: MassTransit's defaults - overridable - checked") {
        const auto defaults = payment_service::PaymentSettings::Load("", {});
        CHECK(defaults.endpoint.concurrent_message_limit == 0);
        CHECK(defaults.endpoint.redelivery_limit == 0);
        const KillSwitchSettings& kill_switch = defaults.endpoint.kill_switch;
        CHECK(kill_switch.enabled);
        CHECK(kill_switch.activation_threshold == 100);
        CHECK(kill_switch.trip_threshold == 10);
        CHECK(kill_switch.tracking_period == std::chrono::seconds(60));
        CHECK(kill_switch.restart_timeout == std::chrono::seconds(60));

        const auto tuned = payment_service::PaymentSettings::Load(
            "",
            {"Endpoint__ConcurrentMessageLimit=4", "Endpoint__RedeliveryLimit=5", "Endpoint__KillSwitch__Enabled=false",
             "Endpoint__KillSwitch__TripThreshold=25", "Endpoint__KillSwitch__RestartTimeoutSeconds=5"});
        CHECK(tuned.endpoint.concurrent_message_limit == 4);
        CHECK(tuned.endpoint.redelivery_limit == 5);
        CHECK_FALSE(tuned.endpoint.kill_switch.enabled);
        CHECK(tuned.endpoint.kill_switch.trip_threshold == 25);
        CHECK(tuned.endpoint.kill_switch.restart_timeout == std::chrono::seconds(5));
        const auto json = Json::parse(EndpointSettingsToJson(tuned.endpoint).dump());
        CHECK(EndpointSettingsFromJson(json).kill_switch.restart_timeout == std::chrono::seconds(5));

        CHECK_THROWS_WITH_AS(payment_service::PaymentSettings::Load("", {"Endpoint__KillSwitch__TripThreshold=101"}),
                             doctest::Contains("TripThreshold"), SettingsError);
        CHECK_THROWS_WITH_AS(
            payment_service::PaymentSettings::Load("", {"Endpoint__KillSwitch__ActivationThreshold=0"}),
            doctest::Contains("ActivationThreshold"), SettingsError);
        CHECK_THROWS_WITH_AS(payment_service::PaymentSettings::Load("", {"Endpoint__ConcurrentMessageLimit=-1"}),
                             doctest::Contains("ConcurrentMessageLimit"), SettingsError);
    }
}
