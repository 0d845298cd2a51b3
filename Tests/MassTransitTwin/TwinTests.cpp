// Tests with MassTransit itself as the oracle: every mix of our services and their MassTransit twins
// on one broker reaches the same outcomes whichever side declares the topology first, and the twin
// and ours, run through the same scenarios, put the same messages and topology on the wire (but for
// the differences listed with their reasons in AcceptedDifferences.cpp).
#include <doctest/doctest.h>

#include <fstream>
#include <future>
#include <random>
#include <set>
#include <sstream>

#include "Bus/Bus.h"
#include "MassTransitTwin/Deployment.h"
#include "MassTransitTwin/MetricsDiff.h"
#include "MassTransitTwin/WireDiff.h"
#include "Wire/TraceContext.h"

using namespace twin_test;
using namespace broker_test;
using contracts::Json;
using namespace std::chrono_literals;

namespace {

std::string Header(const messaging::MessageProperties& properties, const std::string& name) {
    const auto* value = messaging::FindHeader(properties.headers, name);
    return value ? messaging::HeaderToString(*value) : "<missing>";
}

// The deployment's connections in a vhost: name -> when it connected. A reconnect changes it. The
// test's own raw AMQP client (rabbitmq-c's product name; ours and MassTransit's announce their own)
// is left out: whether the broker lists it yet depends on when its statistics were last emitted.
std::map<std::string, std::string> Connections(const ScopedVhost& vhost) {
    std::map<std::string, std::string> out;
    for (const auto& connection : ManagementApi().Get("vhosts/" + Encode(vhost.name()) + "/connections")) {
        const Json properties = connection.value("client_properties", Json::object());
        if (properties.is_object() && properties.value("product", "") == "rabbitmq-c") continue;
        out[connection["name"].get<std::string>()] = connection.value("connected_at", Json()).dump();
    }
    return out;
}

std::string Describe(const std::map<std::string, std::string>& connections) {
    std::string out;
    for (const auto& [name, connected_at] : connections) out += "  " + name + " connected at " + connected_at + "\n";
    return out;
}

// Takes one message from a queue that MassTransit (or our bus) declares on first use.
std::optional<RawMessage> GetWhenDeclared(RawAmqpClient& peer, const ScopedVhost& vhost, const std::string& queue) {
    if (!WaitForQueue(vhost, queue)) return std::nullopt;
    return peer.Get(queue, 20s);
}

// The four scenarios of the seed (ids ending 0, 1, 2, 3), checked the same way on any deployment;
// `raw_json`: every endpoint uses MassTransit's raw JSON serializer.
void RunScenarios(Deployment& deployment, RawAmqpClient& peer, const ScopedVhost& vhost, const std::string& prefix,
                  bool raw_json = false) {
    struct Outcome {
        char suffix;
        const char* status;
        Json reason;
    };
    static const Outcome kOutcomes[] = {
        {'0', "Failed", "Out of stock"},
        {'1', "Failed", "Credit card limit exceeded"},
        {'2', "Failed", "Payment faulted: Payment gateway unavailable"},  // Fault<ProcessPayment> fails it
        {'3', "Completed", nullptr},
    };
    for (const auto& outcome : kOutcomes) REQUIRE(deployment.Submit(prefix + outcome.suffix) == 202);
    for (const auto& outcome : kOutcomes) {
        const Json order = deployment.WaitForFinal(prefix + outcome.suffix);
        CHECK_MESSAGE(order["status"] == outcome.status, order.dump());
        CHECK_MESSAGE(order["reason"] == outcome.reason, order.dump());
        CHECK(order["totalAmount"] == "149.97");
    }

    // The suffix-2 command in payment-service_error with MassTransit's headers, after four attempts.
    auto error = GetWhenDeclared(peer, vhost, "payment-service_error");
    REQUIRE_MESSAGE(error, "nothing reached payment-service_error");
    const Json body = Json::parse(error->body);
    const auto& p = error->properties;
    if (raw_json) {
        // The saga sent it as raw JSON: the body is the message, its type in a header.
        CHECK(body["orderId"] == prefix + "2");
        CHECK(Header(p, "MT-MessageType") == "urn:message:Contracts:ProcessPayment");
        CHECK(p.content_type == "application/json");
    } else {
        CHECK(body["message"]["orderId"] == prefix + "2");
        CHECK(body["messageType"][0] == "urn:message:Contracts:ProcessPayment");
        CHECK(p.content_type == "application/vnd.masstransit+json");
    }
    CHECK(Header(p, "MT-Reason") == "fault");
    CHECK(Header(p, "MT-Fault-ConsumerType") == "Payment.ProcessPaymentConsumer");
    CHECK(Header(p, "MT-Fault-MessageType") == "Contracts.ProcessPayment");
    CHECK(Header(p, "MT-Fault-Message") == "Payment gateway unavailable");
    CHECK(Header(p, "MT-Fault-RetryCount") == "3");
    CHECK(Header(p, "MT-Fault-InputAddress").ends_with("/" + vhost.name() + "/payment-service"));
    for (const char* name :
         {"MT-Fault-ExceptionType", "MT-Fault-Timestamp", "MT-Fault-StackTrace", "MT-Host-MachineName",
          "MT-Host-ProcessName", "MT-Host-ProcessId", "MT-Host-Assembly", "MT-Host-MassTransitVersion"})
        CHECK_MESSAGE(Header(p, name) != "<missing>", name);
}

// Every endpoint on quorum queues, set the way each side is configured: SetQuorumQueue(1) in the
// twin, Endpoint.QueueType and Endpoint.QuorumInitialGroupSize in ours.
const std::vector<std::string> kQuorumEnvironment = {"Endpoint__QueueType=Quorum",
                                                     "Endpoint__QuorumInitialGroupSize=1"};

// Every endpoint on raw JSON: UseRawJsonSerializer in the twin, Endpoint.Serializer in ours.
const std::vector<std::string> kRawJsonEnvironment = {"Endpoint__Serializer=RawJson"};

// The sum of the counts of `metric`'s series whose labels include `part` ("name=value").
double Total(const MetricsShape& shape, const std::string& metric, const std::string& part = {}) {
    double total = 0;
    for (const auto& [key, value] : shape.counts)
        if (key.rfind(metric + "{", 0) == 0 && key.find(part) != std::string::npos) total += value;
    return total;
}

// The four scenarios on a deployment of one side only, then each service's metrics once everything
// they cause has been counted: two releases confirmed to the saga, the faulting payment's four
// attempts and its fault, nothing in progress.
std::map<Service, MetricsShape> ScenarioMetrics(Side side) {
    ScopedVhost vhost;
    Deployment deployment(vhost, Mix{side, side, side}, side == Side::kTwin ? StartFirst::kTwin : StartFirst::kOurs);
    std::random_device device;
    const std::string prefix = "metrics" + std::to_string(device() % 100000) + "-";
    for (char suffix : {'3', '0', '1', '2'}) REQUIRE(deployment.Submit(prefix + suffix) == 202);
    for (char suffix : {'3', '0', '1', '2'}) CHECK(deployment.WaitForFinal(prefix + suffix).contains("status"));
    std::map<Service, MetricsShape> shapes;
    const std::string active = "_active_ea_total";
    const bool counted = test_support::WaitFor(
        [&] {
            for (Service service : {Service::kOrder, Service::kInventory, Service::kPayment})
                shapes[service] = ReadMetricsShape(deployment.Metrics(service));
            const MetricsShape& orders = shapes[Service::kOrder];
            const MetricsShape& inventory = shapes[Service::kInventory];
            const MetricsShape& payments = shapes[Service::kPayment];
            return Total(orders, "messaging_masstransit_saga_ea_total", "message_type=StockReleased") == 2 &&
                   Total(orders, "messaging_masstransit_saga_ea_total", "message_type=Fault_ProcessPayment") == 1 &&
                   Total(inventory, "messaging_masstransit_consume_ea_total", "message_type=ReleaseStock") == 2 &&
                   Total(payments, "messaging_masstransit_consume_ea_total", "message_type=ProcessPayment") == 6 &&
                   Total(payments, "messaging_masstransit_send_ea_total", "message_type=Fault_ProcessPayment") == 1 &&
                   Total(orders, "messaging_masstransit_receive" + active) == 0 &&
                   Total(inventory, "messaging_masstransit_receive" + active) == 0 &&
                   Total(payments, "messaging_masstransit_receive" + active) == 0;
        },
        30s);
    CHECK_MESSAGE(counted, "the scenarios were not all counted\n" << deployment.Logs());
    return shapes;
}

void RunMix(Mix mix, StartFirst first, const std::vector<std::string>& environment = {}) {
    const std::string label =
        mix.Name() + (first == StartFirst::kTwin ? ", the twin started first" : ", ours started first");
    INFO(label);
    ScopedVhost vhost;
    Deployment deployment(vhost, mix, first, environment);
    // The management API lists a connection a moment after it opens: wait for all three.
    std::map<std::string, std::string> connections;
    CHECK(test_support::WaitFor(
        [&] {
            connections = Connections(vhost);
            return connections.size() == 3;
        },
        10s));
    RawAmqpClient peer(vhost.name());
    std::random_device device;
    RunScenarios(deployment, peer, vhost, "mix" + std::to_string(device() % 100000) + "-",
                 environment == kRawJsonEnvironment);
    const auto after = Connections(vhost);
    CHECK_MESSAGE(after == connections, "a connection was dropped and made again\nbefore:\n"
                                            << Describe(connections) << "after:\n"
                                            << Describe(after) << deployment.Logs());
    const auto troubles = deployment.TopologyTroubles();
    for (const auto& line : troubles) MESSAGE(line);
    CHECK_MESSAGE(troubles.empty(), "a declaration was refused or a connection lost\n" << deployment.Logs());
    if (environment != kQuorumEnvironment) return;
    // Whoever declared first, each queue is the quorum queue MassTransit's SetQuorumQueue(1) makes,
    // and the _error queue copies its endpoint's arguments.
    ManagementApi api;
    const Json expected = {{"x-queue-type", "quorum"}, {"x-quorum-initial-group-size", 1}};
    for (const char* queue : {"order-service", "inventory-service", "payment-service", "payment-service_error"}) {
        const Json q = api.Get("queues/" + Encode(vhost.name()) + "/" + queue);
        CHECK_MESSAGE(q["type"] == "quorum", queue);
        CHECK_MESSAGE(q["arguments"] == expected, queue << ": " << q["arguments"].dump());
    }
}

// A message nothing consumes and a body that is not JSON, published to inventory-service as an
// operator's tool would: the first moves to _skipped, the second to _error with a ReceiveFault.
void PublishStrayMessages(RawAmqpClient& peer, const std::string& prefix) {
    messaging::MessageProperties properties;
    properties.content_type = "application/vnd.masstransit+json";
    properties.delivery_mode = 2;
    properties.message_id = "5a1c0000-0000-4000-8000-00000000000a";
    peer.Publish("inventory-service",
                 R"({"messageId":"5a1c0000-0000-4000-8000-00000000000a","messageType":)"
                 R"(["urn:message:Contracts:NobodyConsumesThis"],"message":{"orderId":")" +
                     prefix + R"(skipped"}})",
                 properties);
    properties.message_id = "5a1c0000-0000-4000-8000-00000000000b";
    peer.Publish("inventory-service", "this is not json", properties);
}

// A completing order submitted with a traceparent and baggage, its saga's messages tapped on the way:
// each carries the caller's trace id with a span of its own, and the baggage. Across a mix, each side
// must continue the other's trace for that to hold.
void RunTracedOrder(Mix mix) {
    INFO(mix.Name());
    ScopedVhost vhost;
    Deployment deployment(vhost, mix, StartFirst::kTwin);
    RawAmqpClient peer(vhost.name());
    const std::vector<std::string> saga = {"Contracts:OrderSubmitted",  "Contracts:CheckInventory",
                                           "Contracts:StockReserved",   "Contracts:ProcessPayment",
                                           "Contracts:PaymentAccepted", "Contracts:OrderCompleted"};
    peer.Tap("trace-tap", saga);
    const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    const std::string caller_span = "00f067aa0ba902b7";
    const std::string order_id = "trace-" + std::to_string(std::random_device{}() % 100000) + "3";
    REQUIRE(deployment.Submit(order_id, {{"traceparent", "00-" + trace_id + "-" + caller_span + "-01"},
                                         {"baggage", "tenant=acme,user=J%C3%B6rg"}}) == 202);
    CHECK(deployment.WaitForFinal(order_id)["status"] == "Completed");
    std::set<std::string> spans = {caller_span};
    std::set<std::string> seen;
    while (seen.size() < saga.size()) {
        const auto message = peer.Get("trace-tap", 20s);
        REQUIRE_MESSAGE(message, "saw only " << seen.size() << " of the saga's messages\n" << deployment.Logs());
        const Json envelope = Json::parse(message->body);
        const std::string type = envelope["messageType"][0];
        seen.insert(type);
        INFO(type);
        const auto span = messaging::TraceContext::Parse(Header(message->properties, "MT-Activity-Id"));
        REQUIRE_MESSAGE(span, Header(message->properties, "MT-Activity-Id"));
        CHECK(span->trace_id == trace_id);
        const Json& headers = envelope["headers"];
        CHECK(headers.value("MT-Activity-Id", "") == span->TraceParent());
        CHECK_MESSAGE(spans.insert(span->span_id).second, "a span id used twice: " << span->span_id);
        std::map<std::string, std::string> baggage;
        for (const auto& item : headers.value("MT-Activity-Correlation-Context", Json::array()))
            baggage[item.value("key", "")] = item.value("value", "");
        CHECK(baggage == std::map<std::string, std::string>{{"tenant", "acme"}, {"user", "J\u00f6rg"}});
    }
}

// MassTransit's request client (the twin's `request` mode) asks our workers, through its bus endpoint
// or direct reply-to; returns each request's printed answer: "<kind>:<orderId>" -> its JSON line.
std::map<std::string, Json> AskWithMassTransit(const ScopedVhost& vhost, const std::string& mode,
                                               const std::vector<std::string>& requests) {
    test_support::TempDir dir;
    const std::string log = dir.File("requester.log");
    std::vector<std::string> arguments = {"request", mode};
    arguments.insert(arguments.end(), requests.begin(), requests.end());
    ChildProcess requester(TwinBinary(), arguments, vhost.SettingsEnvironment(), log);
    const auto exit_code = requester.Wait(120s);
    std::ifstream in(log);
    const std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE_MESSAGE(exit_code == 0, "the requester did not finish:\n" << output);
    std::map<std::string, Json> answers;
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);)
        if (line.starts_with("{\"request\"")) {
            const Json answer = Json::parse(line);
            answers[answer["request"].get<std::string>() + ":" + answer["orderId"].get<std::string>()] = answer;
        }
    return answers;
}

// Our bus alone, as a requester: a RabbitMqTransport and a Bus without receive endpoints, on a loop
// thread of their own.
class OurRequester {
  public:
    explicit OurRequester(const ScopedVhost& vhost) {
        REQUIRE(loop_thread_.loop().Invoke([&] {
            transport_ =
                std::make_unique<messaging::RabbitMqTransport>(loop_thread_.loop(), vhost.Settings(), "requester");
            bus_ =
                std::make_unique<messaging::Bus>(loop_thread_.loop(), *transport_, messaging::BusSettings{"Requester"});
            return transport_->Start().ok() && bus_->Start().ok();
        }));
        // A publish while not connected fails at once, as the services' do.
        REQUIRE(test_support::WaitFor(
            [&] { return loop_thread_.loop().Invoke([&] { return transport_->IsConnected(); }); }, 10s));
    }
    ~OurRequester() {
        loop_thread_.loop().Invoke([&] {
            bus_.reset();
            transport_.reset();
        });
    }

    // Sends the request from the loop and waits for its outcome.
    template <class TRequest, class... TResponses>
    messaging::RequestOutcome Ask(const std::string& queue, const TRequest& message,
                                  std::chrono::milliseconds timeout) {
        auto outcome = std::make_shared<std::promise<messaging::RequestOutcome>>();
        auto answered = outcome->get_future();
        loop_thread_.loop().Post([this, queue, message, timeout, outcome] {
            bus_->Request<TRequest, TResponses...>(
                queue, message, [outcome](messaging::RequestOutcome result) { outcome->set_value(std::move(result)); },
                {.timeout = timeout});
        });
        REQUIRE(answered.wait_for(timeout + 10s) == std::future_status::ready);
        return answered.get();
    }

    std::string ResponseQueue() {
        return loop_thread_.loop().Invoke([&] { return messaging::ExchangeOfAddress(bus_->BusAddress()); });
    }

  private:
    messaging::EventLoopThread loop_thread_;
    std::unique_ptr<messaging::RabbitMqTransport> transport_;
    std::unique_ptr<messaging::Bus> bus_;
};

struct WireRun {
    TopologySnapshot topology;
    std::unique_ptr<WireCapture> capture;
    std::string logs;
};

// Runs every path once to let each side declare what it declares lazily, reads the topology, binds
// the spies, then runs the same paths again and captures what is published.
WireRun Observe(const ScopedVhost& vhost, Side side, const std::vector<std::string>& environment) {
    const std::string label = side == Side::kTwin ? "the twin" : "ours";
    INFO(label);
    Deployment deployment(vhost, {side, side, side}, side == Side::kTwin ? StartFirst::kTwin : StartFirst::kOurs,
                          environment);
    RawAmqpClient peer(vhost.name());
    const bool raw_json = environment == kRawJsonEnvironment;
    RunScenarios(deployment, peer, vhost, "0b4e0000-5a1c-4015-9d3f-08de49a2c1f", raw_json);
    PublishStrayMessages(peer, "warm-up-");
    REQUIRE(GetWhenDeclared(peer, vhost, "inventory-service_skipped"));
    REQUIRE(GetWhenDeclared(peer, vhost, "inventory-service_error"));

    WireRun run;
    run.topology = ReadTopology(vhost);
    run.capture = std::make_unique<WireCapture>(vhost);
    RunScenarios(deployment, peer, vhost, "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e3", raw_json);
    PublishStrayMessages(peer, "measured-");
    const std::map<std::string, std::size_t> expected = {
        {"Contracts:OrderSubmitted", 4}, {"Contracts:CheckInventory", 4},
        {"Contracts:StockShortage", 1},  {"Contracts:StockReserved", 3},
        {"Contracts:ProcessPayment", 3}, {"Contracts:PaymentAccepted", 1},
        {"Contracts:PaymentFailed", 1},  {"Contracts:ReleaseStock", 2},
        {"Contracts:StockReleased", 2},  {"Contracts:OrderFailed", 3},
        {"Contracts:OrderCompleted", 1}, {"MassTransit:Fault--Contracts:ProcessPayment--", 1},
        {"payment-service_error", 1},    {"inventory-service_skipped", 1},
        {"inventory-service_error", 1},  {"MassTransit:ReceiveFault", 1}};
    const bool complete = run.capture->Collect(expected);
    CHECK_MESSAGE(complete, "not every expected message was published; seen:\n" << run.capture->Summary());
    run.logs = deployment.Logs();
    return run;
}

// Runs the scenarios through the twin and through ours, each alone on a vhost of its own, and checks
// that every difference on the wire is one AcceptedDifferences.cpp explains; `environment` configures
// both sides alike.
void CompareWithTwin(const std::vector<std::string>& environment) {
    ScopedVhost twin_vhost;
    ScopedVhost ours_vhost;
    const WireRun twin = Observe(twin_vhost, Side::kTwin, environment);
    const WireRun ours = Observe(ours_vhost, Side::kOurs, environment);

    std::vector<Difference> differences = CompareTopology(twin.topology, ours.topology);
    for (auto& d : CompareMessages(*twin.capture, twin_vhost.name(), *ours.capture, ours_vhost.name()))
        differences.push_back(std::move(d));

    // Each difference once, with the number of message pairs that showed it.
    std::map<std::string, int> counted;
    for (const auto& difference : differences) ++counted[difference.where + ": " + difference.what];
    const auto& accepted = AcceptedDifferences();
    std::vector<bool> seen(accepted.size(), false);
    int unexplained = 0;
    for (const auto& difference : differences) {
        const std::string line = difference.where + ": " + difference.what;
        const int times = counted[line];
        if (times == 0) continue;  // printed already
        counted[line] = 0;
        std::size_t i = 0;
        while (i < accepted.size() && !WildcardMatch(accepted[i].where, difference.where)) ++i;
        if (i < accepted.size()) {
            // The reason once, with the first difference it explains.
            const std::string because = seen[i] ? "" : "\n    because " + accepted[i].reason;
            seen[i] = true;
            MESSAGE("accepted (" << times << "x): " << line << because);
        } else {
            ++unexplained;
            MESSAGE("DIFFERENT (" << times << "x): " << line);
        }
    }
    CHECK_MESSAGE(unexplained == 0, unexplained << " difference(s) from MassTransit that no entry of "
                                                   "AcceptedDifferences.cpp explains (listed above)");
    for (std::size_t i = 0; i < accepted.size(); ++i)
        CHECK_MESSAGE(seen[i],
                      "AcceptedDifferences.cpp lists a difference that no longer shows: " << accepted[i].where);
}

}  // namespace

TEST_SUITE("Twin") {
    TEST_CASE("Mix: all ours") {
        RunMix({Side::kOurs, Side::kOurs, Side::kOurs}, StartFirst::kOurs);
    }

    TEST_CASE("Mix: all twin") {
        RunMix({Side::kTwin, Side::kTwin, Side::kTwin}, StartFirst::kTwin);
    }

    TEST_CASE("Mix: twin OrderService with our workers - either side first") {
        RunMix({Side::kTwin, Side::kOurs, Side::kOurs}, StartFirst::kTwin);
        RunMix({Side::kTwin, Side::kOurs, Side::kOurs}, StartFirst::kOurs);
    }

    TEST_CASE("Mix: twin InventoryService with our OrderService and PaymentService - either side first") {
        RunMix({Side::kOurs, Side::kTwin, Side::kOurs}, StartFirst::kTwin);
        RunMix({Side::kOurs, Side::kTwin, Side::kOurs}, StartFirst::kOurs);
    }

    TEST_CASE("Mix: twin PaymentService with our OrderService and InventoryService - either side first") {
        RunMix({Side::kOurs, Side::kOurs, Side::kTwin}, StartFirst::kTwin);
        RunMix({Side::kOurs, Side::kOurs, Side::kTwin}, StartFirst::kOurs);
    }

    // Every endpoint on quorum queues, one case per twin service (each runs two deployments of about
    // 30 s, well inside the test timeout on a slow machine).
    TEST_CASE("Mix: every endpoint on quorum queues - twin OrderService with our workers - either side first") {
        for (const StartFirst first : {StartFirst::kTwin, StartFirst::kOurs})
            RunMix({Side::kTwin, Side::kOurs, Side::kOurs}, first, kQuorumEnvironment);
    }

    TEST_CASE("Mix: every endpoint on quorum queues - twin InventoryService with ours - either side first") {
        for (const StartFirst first : {StartFirst::kTwin, StartFirst::kOurs})
            RunMix({Side::kOurs, Side::kTwin, Side::kOurs}, first, kQuorumEnvironment);
    }

    TEST_CASE("Mix: every endpoint on quorum queues - twin PaymentService with ours - either side first") {
        for (const StartFirst first : {StartFirst::kTwin, StartFirst::kOurs})
            RunMix({Side::kOurs, Side::kOurs, Side::kTwin}, first, kQuorumEnvironment);
    }

    TEST_CASE("Mix: every endpoint on raw JSON - each twin service with ours") {
        for (const Mix mix : {Mix{Side::kTwin, Side::kOurs, Side::kOurs}, Mix{Side::kOurs, Side::kTwin, Side::kOurs},
                              Mix{Side::kOurs, Side::kOurs, Side::kTwin}})
            RunMix(mix, StartFirst::kTwin, kRawJsonEnvironment);
    }

    TEST_CASE("Trace: a trace begun at either side's POST /order crosses to the other side and comes back") {
        RunTracedOrder({Side::kTwin, Side::kOurs, Side::kOurs});
        RunTracedOrder({Side::kOurs, Side::kTwin, Side::kTwin});
    }

    TEST_CASE(
        "Request: MassTransit's IRequestClient gets our workers' answers - via its bus endpoint and direct reply-to") {
        ScopedVhost vhost;
        Deployment deployment(vhost, {Side::kOurs, Side::kOurs, Side::kOurs}, StartFirst::kOurs);
        const std::map<std::string, std::pair<std::string, Json>> expected = {
            {"check-inventory:req-3", {"StockReserved", nullptr}},
            {"check-inventory:req-0", {"StockShortage", "Out of stock"}},
            {"process-payment:req-3", {"PaymentAccepted", nullptr}},
            {"process-payment:req-1", {"PaymentFailed", "Credit card limit exceeded"}},
            {"process-payment:req-2", {"Fault", "Payment gateway unavailable"}}};
        std::vector<std::string> requests;
        for (const auto& [request, answer] : expected) requests.push_back(request);
        for (const std::string mode : {"bus-endpoint", "reply-to"}) {
            INFO(mode);
            const auto answers = AskWithMassTransit(vhost, mode, requests);
            for (const auto& [request, answer] : expected) {
                INFO(request);
                REQUIRE(answers.count(request));
                CHECK(answers.at(request)["answer"] == answer.first);
                CHECK(answers.at(request).value("reason", Json()) == answer.second);
            }
        }
        // Answered, not published: the saga saw none of these orders.
        CHECK_FALSE(deployment.Order("req-3").has_value());
    }

    TEST_CASE("Request: our request client gets the twin's answers - responses - a fault - a timeout") {
        using namespace contracts;
        ScopedVhost vhost;
        Deployment deployment(vhost, {Side::kTwin, Side::kTwin, Side::kTwin}, StartFirst::kTwin);
        OurRequester requester(vhost);
        const std::vector<OrderItem> items = {{.sku = "SKU-1", .quantity = 1, .unit_price = *Decimal::Parse("9.99")}};
        auto check_inventory = [&](const char* order_id) {
            return requester.Ask<CheckInventory, StockReserved, StockShortage>(
                "inventory-service", CheckInventory{.order_id = *OrderId::Parse(order_id), .items = items}, 30s);
        };
        auto process_payment = [&](const char* order_id, const std::string& queue = "payment-service",
                                   std::chrono::milliseconds timeout = 30s) {
            return requester.Ask<ProcessPayment, PaymentAccepted, PaymentFailed>(
                queue,
                ProcessPayment{
                    .order_id = *OrderId::Parse(order_id), .amount = *Decimal::Parse("9.99"), .card_number = "tok"},
                timeout);
        };
        using Kind = messaging::RequestOutcome::Kind;

        const auto reserved = check_inventory("req-3");
        REQUIRE_MESSAGE(reserved.kind == Kind::kResponse, reserved.error);
        CHECK(reserved.Is<StockReserved>());
        CHECK(reserved.Read<StockReserved>().order_id.str() == "req-3");

        const auto shortage = check_inventory("req-0");
        REQUIRE_MESSAGE(shortage.kind == Kind::kResponse, shortage.error);
        REQUIRE(shortage.Is<StockShortage>());
        CHECK(shortage.Read<StockShortage>().reason == "Out of stock");

        const auto accepted = process_payment("req-3");
        REQUIRE_MESSAGE(accepted.kind == Kind::kResponse, accepted.error);
        CHECK(accepted.Is<PaymentAccepted>());

        const auto failed = process_payment("req-1");
        REQUIRE_MESSAGE(failed.kind == Kind::kResponse, failed.error);
        REQUIRE(failed.Is<PaymentFailed>());
        CHECK(failed.Read<PaymentFailed>().reason == "Credit card limit exceeded");

        // The twin's consumer gives up after its retries and sends Fault<ProcessPayment> to us.
        const auto fault = process_payment("req-2");
        REQUIRE_MESSAGE(fault.kind == Kind::kFault, fault.error);
        CHECK(fault.error == "Payment gateway unavailable");
        CHECK(fault.answer.request_id == fault.request_id);

        // No one consumes this exchange's messages: the request times out.
        const auto unanswered = process_payment("req-3", "nobody-home", 1500ms);
        CHECK(unanswered.kind == Kind::kTimeout);

        // The bus endpoint, as MassTransit 8.5's RabbitMqBusFactoryConfigurator declares it.
        ManagementApi api;
        const std::string v = Encode(vhost.name());
        const std::string queue = requester.ResponseQueue();
        const Json declared = api.Get("queues/" + v + "/" + Encode(queue));
        CHECK(declared["durable"] == false);
        CHECK(declared["auto_delete"] == true);
        CHECK(declared["exclusive"] == false);
        CHECK(declared["arguments"] == Json{{"x-expires", 60000}});
        const Json exchange = api.Get("exchanges/" + v + "/" + Encode(queue));
        CHECK(exchange["type"] == "fanout");
        CHECK(exchange["durable"] == false);
        CHECK(exchange["auto_delete"] == true);
        CHECK(api.Get("bindings/" + v + "/e/" + Encode(queue) + "/q/" + Encode(queue)).size() == 1);
        // Answered to us, not published: the twin's saga saw none of these orders.
        CHECK_FALSE(deployment.Order("req-3").has_value());
    }

    TEST_CASE(
        "Metrics: the twin's meter and ours after the four scenarios - same names and types and labels and counts") {
        const auto twin = ScenarioMetrics(Side::kTwin);
        const auto ours = ScenarioMetrics(Side::kOurs);
        for (Service service : {Service::kOrder, Service::kInventory, Service::kPayment}) {
            INFO(QueueOf(service));
            const MetricsShape& theirs = twin.at(service);
            // The twin's scrape has MassTransit's instruments at all: the comparison means something.
            CHECK(theirs.types.size() >= 4);
            const auto differences = CompareMetrics(theirs, ours.at(service));
            for (const auto& line : differences) MESSAGE(line);
            CHECK(differences.empty());
        }
    }

    TEST_CASE("Wire: the twin and ours publish the same messages and declare the same topology") {
        CompareWithTwin({});
    }

    TEST_CASE("Wire: with raw JSON on every endpoint the twin and ours publish the same messages") {
        CompareWithTwin(kRawJsonEnvironment);
    }
}
