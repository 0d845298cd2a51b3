// The HTTP API on the loop's HttpServer on a free port, with a real client (cpp-httplib's): accepted orders,
// every validation error, malformed and oversize bodies, duplicates, 404s, 503 when the bus is away,
// and the final state of each simulation scenario read back through GET. Under ctest every answer is
// recorded (Support/HttpAnswers.h) and checked against docs/openapi.json by the OpenAPI test.
#include <doctest/doctest.h>
#include <httplib.h>

#include <map>
#include <set>

#include "Support/HttpAnswers.h"
#include "Support/MetricsText.h"
#include "Support/TestSupport.h"

using namespace contracts::literals;

using namespace contracts;
using namespace std::chrono_literals;
using test_support::InMemorySystem;
using test_support::SystemOptions;

namespace {

struct ApiFixture {
    explicit ApiFixture(SystemOptions options = SystemOptions{.start_http = true})
        : system(options), client("127.0.0.1", system.http_port()) {
        client.set_read_timeout(15, 0);
        test_support::RecordAnswersOf(client);
    }

    httplib::Result Post(const std::string& body, const std::string& type = "application/json") {
        return client.Post("/order", body, type.c_str());
    }

    // Expects a JSON error of `status` that names `field` (empty: no field).
    void ExpectError(const httplib::Result& result, int status, const std::string& field) {
        REQUIRE(result);
        CHECK(result->status == status);
        CHECK(result->get_header_value("Content-Type") == "application/json");
        const Json body = Json::parse(result->body, nullptr, false);
        REQUIRE(body.is_object());
        CHECK(body["message"].is_string());
        if (field.empty())
            CHECK_FALSE(body.contains("field"));
        else
            CHECK(body.value("field", "") == field);
    }

    std::string FinalStatus(const std::string& id) {
        std::string status;
        test_support::WaitFor(
            [&] {
                auto result = client.Get(("/order/" + id).c_str());
                if (!result || result->status != 200) return false;
                status = Json::parse(result->body)["status"];
                return status == "Completed" || status == "Failed";
            },
            15s);
        return status;
    }

    std::size_t SubmittedCount(const std::string& id) {
        return system.harness()
            .Published<OrderSubmitted>([&](const OrderSubmitted& m) { return m.order_id.str() == id; })
            .size();
    }

    InMemorySystem system;
    httplib::Client client;
};

}  // namespace

TEST_SUITE("OrderService.HttpApi") {
    TEST_CASE("POST /order accepts a valid order with 202 - its id and a Location") {
        ApiFixture api;
        auto result = api.Post(R"({"orderId":"web-1003","customerNumber":"CUST-1","totalAmount":"49.98",
                                   "items":[{"sku":"SKU-1","quantity":2,"unitPrice":"24.99"}]})");
        REQUIRE(result);
        CHECK(result->status == 202);
        CHECK(result->get_header_value("Location") == "/order/web-1003");
        CHECK(Json::parse(result->body) == Json{{"orderId", "web-1003"}});
        CHECK(api.FinalStatus("web-1003") == "Completed");
        auto order = api.client.Get("/order/web-1003");
        REQUIRE(order);
        const Json body = Json::parse(order->body);
        CHECK(body["customerNumber"] == "CUST-1");
        CHECK(body["totalAmount"] == "49.98");
        CHECK(body["reason"].is_null());
        CHECK(body["items"][0]["sku"] == "SKU-1");
        CHECK(ParseIso8601(body["createdAt"].get<std::string>()).has_value());
        CHECK(ParseIso8601(body["updatedAt"].get<std::string>()).has_value());
    }

    TEST_CASE("POST /order begins the saga's trace from traceparent and baggage - or a new one - every message in it") {
        ApiFixture api;
        const std::string body = R"({"orderId":"ID","customerNumber":"C","totalAmount":"1.5",
                                     "items":[{"sku":"SKU-1","quantity":1,"unitPrice":"1.5"}]})";
        auto with_id = [&](const std::string& id) {
            std::string text = body;
            return text.replace(text.find("ID"), 2, id);
        };
        const std::string trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        auto traced = api.client.Post(
            "/order", {{"traceparent", "00-" + trace_id + "-00f067aa0ba902b7-01"}, {"baggage", "tenant=acme"}},
            with_id("traced-3"), "application/json");
        REQUIRE(traced);
        CHECK(traced->status == 202);
        auto untraced =
            api.client.Post("/order", {{"traceparent", "00-garbage"}}, with_id("untraced-3"), "application/json");
        REQUIRE(untraced);
        CHECK(untraced->status == 202);
        REQUIRE(api.FinalStatus("traced-3") == "Completed");
        REQUIRE(api.FinalStatus("untraced-3") == "Completed");
        REQUIRE(api.system.harness().WaitPublished<OrderCompleted>(
            [](const OrderCompleted& m) { return m.order_id.str() == "untraced-3"; }));
        std::map<std::string, std::set<std::string>> traces;  // order id -> trace ids of its messages
        std::map<std::string, int> messages;
        for (const auto& message : api.system.harness().Published()) {
            if (!message.message.is_object() || !message.message.contains("orderId")) continue;
            const std::string order_id = message.message["orderId"];
            const auto* header = messaging::FindHeader(message.transport.properties.headers, "MT-Activity-Id");
            REQUIRE_MESSAGE(header, message.destination);
            const auto span = messaging::TraceContext::Parse(messaging::HeaderToString(*header));
            REQUIRE(span);
            CHECK(span->span_id != "00f067aa0ba902b7");
            traces[order_id].insert(span->trace_id);
            ++messages[order_id];
            if (order_id == "traced-3")
                CHECK(message.envelope["headers"]["MT-Activity-Correlation-Context"] ==
                      Json::parse(R"([{"key":"tenant","value":"acme"}])"));
        }
        CHECK(messages["traced-3"] >= 6);  // OrderSubmitted through OrderCompleted
        CHECK(traces["traced-3"] == std::set<std::string>{trace_id});
        REQUIRE(traces["untraced-3"].size() == 1);
        CHECK(*traces["untraced-3"].begin() != trace_id);
    }

    TEST_CASE("Without an orderId the API generates a lowercase GUID - numbers are accepted for money") {
        ApiFixture api;
        auto result = api.Post(R"({"customerNumber":"C","totalAmount":10.5})");
        REQUIRE(result);
        CHECK(result->status == 202);
        const std::string id = Json::parse(result->body)["orderId"];
        REQUIRE(Guid::Parse(id).has_value());
        CHECK(Guid::Parse(id)->ToString() == id);
        REQUIRE(api.system.harness().WaitPublished<OrderSubmitted>(
            [&](const OrderSubmitted& m) { return m.order_id.str() == id; }));
        CHECK(api.system.harness().Published<OrderSubmitted>()[0].total_amount.ToString() == "10.5");
    }

    TEST_CASE("Money in a JSON number is read from its text - never through a double") {
        ApiFixture api;
        // 19 significant digits: a double keeps about 16, so either would come back rounded.
        auto result = api.Post(R"({"orderId":"exact-3","customerNumber":"C","totalAmount":1234567890123456.78})");
        REQUIRE(result);
        CHECK(result->status == 202);
        REQUIRE(api.FinalStatus("exact-3") == "Completed");
        auto order = api.client.Get("/order/exact-3");
        REQUIRE(order);
        CHECK(Json::parse(order->body)["totalAmount"] == "1234567890123456.78");
        auto submitted = api.system.harness().Published<OrderSubmitted>(
            [](const OrderSubmitted& m) { return m.order_id.str() == "exact-3"; });
        REQUIRE(submitted.size() == 1);
        CHECK(submitted[0].total_amount.ToString() == "1234567890123456.78");
        // Two amounts a cent apart stay a cent apart.
        REQUIRE(api.Post(R"({"orderId":"exact-a","customerNumber":"C","totalAmount":9223372036854.07})")->status ==
                202);
        REQUIRE(api.Post(R"({"orderId":"exact-b","customerNumber":"C","totalAmount":9223372036854.08})")->status ==
                202);
        CHECK(Json::parse(api.client.Get("/order/exact-a")->body)["totalAmount"] == "9223372036854.07");
        CHECK(Json::parse(api.client.Get("/order/exact-b")->body)["totalAmount"] == "9223372036854.08");
    }

    TEST_CASE("An amount a numeric(18 2) column cannot carry is a 400 naming the field - nothing is stored") {
        ApiFixture api;
        for (const char* amount : {"12345678901234567.89", "1000000000000000000", "10000000000000000",
                                   "\"10000000000000000\"", "\"1.500\"", "1.500", "1e3", "123456789012345678901234"}) {
            INFO(amount);
            api.ExpectError(
                api.Post(std::string(R"({"orderId":"big-3","customerNumber":"C","totalAmount":)") + amount + "}"), 400,
                "totalAmount");
        }
        // The largest amount it can carry is accepted, and read back as it was sent.
        auto largest = api.Post(R"({"orderId":"big-4","customerNumber":"C","totalAmount":9999999999999999.99})");
        REQUIRE(largest);
        CHECK(largest->status == 202);
        CHECK(api.FinalStatus("big-4") == "Completed");
        CHECK(Json::parse(api.client.Get("/order/big-4")->body)["totalAmount"] == "9999999999999999.99");
        CHECK(api.client.Get("/order/big-3")->status == 404);
        // A number where a string belongs is refused, though the reader kept it as text.
        api.ExpectError(api.Post(R"({"customerNumber":4.5,"totalAmount":"1"})"), 400, "customerNumber");
    }

    TEST_CASE("Each invalid field is rejected with 400 naming it - and nothing is published") {
        ApiFixture api;
        api.ExpectError(api.Post(R"({"totalAmount":"1.00"})"), 400, "customerNumber");
        api.ExpectError(api.Post(R"({"customerNumber":"","totalAmount":"1.00"})"), 400, "customerNumber");
        api.ExpectError(api.Post(R"({"customerNumber":")" + std::string(257, 'c') + R"(","totalAmount":"1.00"})"), 400,
                        "customerNumber");
        api.ExpectError(api.Post(R"({"customerNumber":42,"totalAmount":"1.00"})"), 400, "customerNumber");
        api.ExpectError(api.Post(R"({"customerNumber":"C"})"), 400, "totalAmount");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":"0"})"), 400, "totalAmount");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":-5})"), 400, "totalAmount");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":"1.999"})"), 400, "totalAmount");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":"ten"})"), 400, "totalAmount");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":true})"), 400, "totalAmount");
        api.ExpectError(api.Post(R"({"orderId":"has space","customerNumber":"C","totalAmount":"1"})"), 400, "orderId");
        api.ExpectError(
            api.Post(R"({"orderId":")" + std::string(65, 'a') + R"(","customerNumber":"C","totalAmount":"1"})"), 400,
            "orderId");
        api.ExpectError(api.Post(R"({"orderId":"","customerNumber":"C","totalAmount":"1"})"), 400, "orderId");
        api.ExpectError(api.Post(R"({"orderId":7,"customerNumber":"C","totalAmount":"1"})"), 400, "orderId");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":"1","items":{}})"), 400, "items");
        api.ExpectError(
            api.Post(R"({"customerNumber":"C","totalAmount":"1","items":[{"sku":"A","quantity":0,"unitPrice":"1"}]})"),
            400, "items[0].quantity");
        api.ExpectError(
            api.Post(R"({"customerNumber":"C","totalAmount":"1","items":[{"quantity":1,"unitPrice":"1"}]})"), 400,
            "items[0].sku");
        api.ExpectError(
            api.Post(
                R"({"customerNumber":"C","totalAmount":"1","items":[{"sku":"A","quantity":1,"unitPrice":"0.001"}]})"),
            400, "items[0].unitPrice");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":"1","totalAmmount":"2"})"), 400,
                        "totalAmmount");
        CHECK(api.system.harness().Published<OrderSubmitted>().empty());
    }

    TEST_CASE("Malformed JSON and a wrong content type and an oversize body get JSON errors") {
        ApiFixture api;
        api.ExpectError(api.Post("{\"customerNumber\": "), 400, "");
        api.ExpectError(api.Post("[1,2,3]"), 400, "");
        api.ExpectError(api.Post(R"({"customerNumber":"C","totalAmount":"1"})", "text/plain"), 415, "Content-Type");
        const std::string huge = R"({"customerNumber":")" + std::string(70 * 1024, 'x') + R"(","totalAmount":"1"})";
        auto result = api.Post(huge);
        REQUIRE(result);
        CHECK(result->status == 413);
        CHECK(Json::parse(result->body, nullptr, false).value("error", "") == "payload_too_large");
        CHECK(api.system.harness().Published<OrderSubmitted>().empty());
        // The server is still serving.
        auto ok = api.Post(R"({"customerNumber":"C","totalAmount":"1"})");
        REQUIRE(ok);
        CHECK(ok->status == 202);
    }

    TEST_CASE("Posting the same orderId again answers 202 with the same id and starts nothing new") {
        ApiFixture api;
        const std::string body = R"({"orderId":"web-dup-3","customerNumber":"C","totalAmount":"5"})";
        auto first = api.Post(body);
        REQUIRE(first);
        CHECK(first->status == 202);
        CHECK(api.FinalStatus("web-dup-3") == "Completed");
        auto second = api.Post(body);
        REQUIRE(second);
        CHECK(second->status == 202);
        CHECK(Json::parse(second->body)["orderId"] == "web-dup-3");
        CHECK(api.SubmittedCount("web-dup-3") == 1);
    }

    TEST_CASE("The same orderId with another body answers 409 with the stored order's location") {
        ApiFixture api;
        REQUIRE(api.Post(R"({"orderId":"web-409-3","customerNumber":"C","totalAmount":"5.00",
                             "items":[{"sku":"A","quantity":1,"unitPrice":"5"}]})")
                    ->status == 202);
        // The same order written another way (amounts by value, a number for a string) is the same order.
        auto same = api.Post(R"({"orderId":"web-409-3","customerNumber":"C","totalAmount":5,
                                 "items":[{"sku":"A","quantity":1,"unitPrice":"5.00"}]})");
        REQUIRE(same);
        CHECK(same->status == 202);
        for (const char* other : {R"({"orderId":"web-409-3","customerNumber":"C","totalAmount":"6",
                                      "items":[{"sku":"A","quantity":1,"unitPrice":"5"}]})",
                                  R"({"orderId":"web-409-3","customerNumber":"D","totalAmount":"5",
                                      "items":[{"sku":"A","quantity":1,"unitPrice":"5"}]})",
                                  R"({"orderId":"web-409-3","customerNumber":"C","totalAmount":"5"})"}) {
            auto conflict = api.Post(other);
            REQUIRE(conflict);
            api.ExpectError(conflict, 409, "orderId");
            CHECK(conflict->get_header_value("Location") == "/order/web-409-3");
        }
        CHECK(api.FinalStatus("web-409-3") == "Completed");
        const Json stored = Json::parse(api.client.Get("/order/web-409-3")->body);
        CHECK(stored["customerNumber"] == "C");
        CHECK(stored["totalAmount"] == "5.00");
        CHECK(api.SubmittedCount("web-409-3") == 1);
    }

    TEST_CASE("A database locked by another process never freezes the loop - POST gets its 503 on time") {
        ApiFixture api(SystemOptions{.start_http = true, .http_request_timeout = 500ms});
        api.client.set_read_timeout(3, 0);
        // Another process takes the order database's write lock and holds it.
        test_support::SqliteLock lock(api.system.dir()->File("orders.db"));
        auto refused = api.Post(R"({"orderId":"locked-3","customerNumber":"C","totalAmount":"5"})");
        REQUIRE(refused);
        CHECK(refused->status == 503);
        // The loop kept serving meanwhile, and reads do not wait for the writer. Health says why the
        // order waited: the database is busy, which degrades the service without stopping it.
        auto health = api.client.Get("/health");
        REQUIRE(health);
        CHECK(health->status == 200);
        const Json busy = Json::parse(health->body);
        CHECK(busy["status"] == "degraded");
        CHECK(busy["database"]["provider"] == "sqlite");
        CHECK(busy["database"]["state"] == "busy");
        CHECK(busy["database"]["error"].get<std::string>().find("another connection holds the write lock") == 0);
        CHECK(api.client.Get("/health/ready")->status == 200);
        CHECK(api.client.Get("/order/locked-3")->status == 404);
        lock.Release();
        // Health finds the lock let go at once, before anything is written again.
        CHECK(Json::parse(api.client.Get("/health")->body)["database"] == Json::parse(R"({"provider":"sqlite",
                                                                                          "state":"ok"})"));
        // Nothing of the refused request was stored: the same id is a new order now.
        auto accepted = api.Post(R"({"orderId":"locked-3","customerNumber":"C","totalAmount":"6"})");
        REQUIRE(accepted);
        CHECK(accepted->status == 202);
        CHECK(api.FinalStatus("locked-3") == "Completed");
        CHECK(Json::parse(api.client.Get("/order/locked-3")->body)["totalAmount"] == "6");
        CHECK(api.SubmittedCount("locked-3") == 1);
    }

    TEST_CASE("A worker whose database is locked waits without faulting - the loop keeps serving") {
        ApiFixture api;
        api.client.set_read_timeout(1, 0);
        test_support::SqliteLock lock(api.system.dir()->File("payments.db"));
        REQUIRE(api.Post(R"({"orderId":"wait-3","customerNumber":"C","totalAmount":"5"})")->status == 202);
        // The payment cannot be stored while the lock is held: the order waits in InventoryReserved.
        REQUIRE(api.system.WaitForStatus("wait-3", order_service::OrderStatus::kInventoryReserved));
        // Every service shares this loop: it answers at once, over and over, for half a second (longer
        // than the worker's four 20 ms attempts) while the worker waits.
        const auto until = std::chrono::steady_clock::now() + 500ms;
        int answered = 0;
        while (std::chrono::steady_clock::now() < until && answered < 10000) {
            auto health = api.client.Get("/health");
            REQUIRE(health);
            CHECK(health->status == 200);
            ++answered;
        }
        CHECK(answered > 1);
        CHECK(api.system.Order("wait-3")->status == order_service::OrderStatus::kInventoryReserved);
        // The worker's own health says what holds it.
        CHECK(api.system.loop().Invoke([&] { return api.system.payment().Health().database->state; }) ==
              messaging::StoreState::kBusy);
        lock.Release();
        CHECK(api.FinalStatus("wait-3") == "Completed");
        CHECK(api.system.harness().Published<contracts::Fault<ProcessPayment>>().empty());
        CHECK(api.system.QueueDepth("payment-service_error") == 0);
        CHECK(api.system.harness().Published<PaymentAccepted>().size() == 1);
        CHECK(api.system.loop().Invoke([&] { return api.system.payment().Health().database->state; }) ==
              messaging::StoreState::kOk);
    }

    TEST_CASE("A database that refuses writes: POST 503 naming it - health unhealthy and not ready - until a commit") {
        ApiFixture api;
        auto& orders_db = api.system.orders().database();
        // The file may grow no further, as on a full disk: SQLite answers SQLITE_FULL once a write
        // needs a new page. Orders are posted until one does. Some writes still fit: health stays
        // failing for the fault hold after the last refusal (2 s here, 10 s by default).
        api.system.loop().Invoke([&] {
            orders_db.SetFaultHold(2s);
            orders_db.Execute("PRAGMA max_page_count = 1");
        });
        std::string refused_id;
        for (int i = 0; i < 200 && refused_id.empty(); ++i) {
            // Every id ends in 'c', which no simulation rule names: the refused order, posted again
            // below, completes whichever of them the database refuses.
            const std::string id = "full-" + std::to_string(i) + "c";
            auto result = api.Post(R"({"orderId":")" + id + R"(","customerNumber":"C","totalAmount":"5"})");
            REQUIRE(result);
            if (result->status == 202) continue;
            refused_id = id;
            CHECK(result->status == 503);
            CHECK(Json::parse(result->body) ==
                  Json::parse(
                      R"({"error":"unavailable","message":"the database cannot store the order now; try again"})"));
        }
        REQUIRE_FALSE(refused_id.empty());
        CHECK(api.client.Get(("/order/" + refused_id).c_str())->status == 404);
        auto health = api.client.Get("/health");
        REQUIRE(health);
        CHECK(health->status == 503);
        const Json failing = Json::parse(health->body);
        CHECK(failing["status"] == "unhealthy");
        CHECK(failing["broker"] == "in-process");
        CHECK(failing["database"]["state"] == "failing");
        CHECK(failing["database"]["error"] == "database or disk is full");
        auto ready = api.client.Get("/health/ready");
        REQUIRE(ready);
        CHECK(ready->status == 503);
        CHECK(Json::parse(ready->body)["reason"] == "the database is failing: database or disk is full");
        auto scrape = api.client.Get("/metrics");
        REQUIRE(scrape);
        CHECK(test_support::SampleSum(scrape->body, "db_state", {{"service", "OrderService"}, {"state", "failing"}}) ==
              1);
        CHECK(test_support::SampleSum(scrape->body, "db_state", {{"service", "OrderService"}, {"state", "ok"}}) == 0);

        // Room again: the next order is stored, and once the hold has passed with nothing refused
        // the database is ok.
        api.system.loop().Invoke([&] { orders_db.Execute("PRAGMA max_page_count = 1073741823"); });
        auto accepted = api.Post(R"({"orderId":")" + refused_id + R"(","customerNumber":"C","totalAmount":"5"})");
        REQUIRE(accepted);
        CHECK(accepted->status == 202);
        CHECK(test_support::WaitFor(
            [&] {
                auto answer = api.client.Get("/health");
                return answer && answer->status == 200 &&
                       Json::parse(answer->body)["database"] == Json::parse(R"({"provider":"sqlite","state":"ok"})");
            },
            20s));
        CHECK(api.client.Get("/health/ready")->status == 200);
        CHECK(api.FinalStatus(refused_id) == "Completed");
    }

    TEST_CASE("GET answers 404 for an unknown order - 400 for an invalid id - unknown routes are JSON 404s") {
        ApiFixture api;
        api.ExpectError(api.client.Get("/order/no-such-order"), 404, "orderId");
        api.ExpectError(api.client.Get("/order/bad%20id"), 400, "orderId");
        api.ExpectError(api.client.Get("/orders"), 404, "");
        auto wrong_method = api.client.Delete("/order/x");
        api.ExpectError(wrong_method, 405, "");
        CHECK(wrong_method->get_header_value("Allow") == "GET");
        auto get_on_post = api.client.Get("/order");
        api.ExpectError(get_on_post, 405, "");
        CHECK(get_on_post->get_header_value("Allow") == "POST");
    }

    TEST_CASE("When the bus is unavailable POST answers 503 and stores and publishes nothing") {
        ApiFixture api;
        api.system.loop().Invoke([&] { api.system.transport().SetAvailable(false); });
        api.ExpectError(api.Post(R"({"orderId":"web-503","customerNumber":"C","totalAmount":"5"})"), 503, "");
        CHECK_FALSE(api.system.Order("web-503").has_value());
        CHECK(api.system.harness().Published<OrderSubmitted>().empty());
        api.system.loop().Invoke([&] { api.system.transport().SetAvailable(true); });
        auto result = api.Post(R"({"orderId":"web-503","customerNumber":"C","totalAmount":"5"})");
        REQUIRE(result);
        CHECK(result->status == 202);
    }

    TEST_CASE("GET /health answers 200 while the bus is up and 503 when it is not") {
        ApiFixture api;
        auto healthy = api.client.Get("/health");
        REQUIRE(healthy);
        CHECK(healthy->status == 200);
        // The in-memory bus is no broker connection, and health does not claim one.
        CHECK(Json::parse(healthy->body)["broker"] == "in-process");
        api.system.loop().Invoke([&] { api.system.transport().SetAvailable(false); });
        auto degraded = api.client.Get("/health");
        REQUIRE(degraded);
        CHECK(degraded->status == 503);
        CHECK(Json::parse(degraded->body)["broker"] == "disconnected");
        CHECK(Json::parse(degraded->body)["endpoints"][0]["consuming"] == false);
    }

    TEST_CASE("GET /health/ready is 200 while every endpoint consumes - 503 with why - /health/live is always 200") {
        ApiFixture api;
        auto get = [&](const char* path) {
            auto result = api.client.Get(path);
            REQUIRE(result);
            return std::pair{result->status, Json::parse(result->body)};
        };
        CHECK(get("/health/ready") == std::pair{200, Json::parse(R"({"status":"ready"})")});
        CHECK(get("/health/live") == std::pair{200, Json::parse(R"({"status":"live"})")});
        // Consumers gone: orders are still taken (health degraded, 200) but the service is not ready.
        api.system.loop().Invoke([&] { api.system.transport().CancelConsumersOf("order-service"); });
        CHECK(get("/health").first == 200);
        CHECK(get("/health/ready") == std::pair{503, Json::parse(R"({"status":"not ready",
                                             "reason":"the endpoint order-service is not consuming"})")});
        // The bus away: not ready for that reason first; alive all the same.
        api.system.loop().Invoke([&] { api.system.transport().SetAvailable(false); });
        CHECK(get("/health/ready") ==
              std::pair{503, Json::parse(R"({"status":"not ready","reason":"the broker is disconnected"})")});
        CHECK(get("/health/live").first == 200);
        auto post = api.client.Post("/health/ready", "", "application/json");
        REQUIRE(post);
        CHECK(post->status == 405);
    }

    TEST_CASE("GET /health lists each endpoint - an open connection with no live consumer is degraded") {
        ApiFixture api;
        auto healthy = api.client.Get("/health");
        REQUIRE(healthy);
        CHECK(Json::parse(healthy->body)["status"] == "ok");
        CHECK(Json::parse(healthy->body)["endpoints"] ==
              Json::parse(R"([{"queue":"order-service","consuming":true}])"));
        api.system.loop().Invoke([&] { api.system.transport().CancelConsumersOf("order-service"); });
        auto degraded = api.client.Get("/health");
        REQUIRE(degraded);
        const Json body = Json::parse(degraded->body);
        CHECK(degraded->status == 200);  // orders are still taken and stored
        CHECK(body["status"] == "degraded");
        CHECK(body["broker"] == "in-process");
        CHECK(body["endpoints"] == Json::parse(R"([{"queue":"order-service","consuming":false}])"));
    }

    TEST_CASE("GET /health names an endpoint its kill switch stopped") {
        ApiFixture api;
        order_service::HttpSettings settings;
        settings.host = "127.0.0.1";
        settings.port = 0;
        std::unique_ptr<order_service::OrderHttpApi> tripped_api;
        const int port = api.system.loop().Invoke([&] {
            tripped_api = std::make_unique<order_service::OrderHttpApi>(
                api.system.loop(), api.system.orders().submission(), api.system.orders().lookup(),
                [] {
                    return messaging::HealthReport{.state = messaging::BrokerState::kConnected,
                                                   .endpoints = {{.queue = "order-service",
                                                                  .consuming = false,
                                                                  .kill_switch_tripped = true,
                                                                  .problem = {}}}};
                },
                nullptr, settings);
            tripped_api->Start();
            return tripped_api->port();
        });
        httplib::Client client("127.0.0.1", port);
        test_support::RecordAnswersOf(client);
        auto result = client.Get("/health");
        REQUIRE(result);
        CHECK(result->status == 200);
        const Json body = Json::parse(result->body);
        CHECK(body["status"] == "degraded");
        CHECK(body["endpoints"] ==
              Json::parse(R"([{"queue":"order-service","consuming":false,"killSwitch":"tripped"}])"));
        auto ready = client.Get("/health/ready");
        REQUIRE(ready);
        CHECK(ready->status == 503);
        CHECK(Json::parse(ready->body)["reason"] == "the endpoint order-service is stopped by its kill switch");
        api.system.loop().Invoke([&] { tripped_api.reset(); });
    }

    TEST_CASE("A second API on a port already in use fails to start instead of sharing it") {
        ApiFixture api;
        order_service::HttpSettings taken;
        taken.host = "127.0.0.1";
        taken.port = api.system.http_port();
        api.system.loop().Invoke([&] {
            order_service::OrderHttpApi second(
                api.system.loop(), api.system.orders().submission(), api.system.orders().lookup(),
                [] { return messaging::HealthReport{messaging::BrokerState::kConnected}; }, nullptr, taken);
            CHECK_THROWS_WITH(second.Start(), doctest::Contains("cannot listen"));
        });
        auto still = api.client.Get("/health");
        REQUIRE(still);
        CHECK(still->status == 200);
    }

    TEST_CASE("GET /metrics serves the saga's instruments in Prometheus' text format - other methods get 405") {
        ApiFixture api;
        REQUIRE(api.Post(R"({"orderId":"metered-3","customerNumber":"C","totalAmount":"1.00"})")->status == 202);
        REQUIRE(api.FinalStatus("metered-3") == "Completed");
        auto scrape = api.client.Get("/metrics");
        REQUIRE(scrape);
        CHECK(scrape->status == 200);
        CHECK(scrape->get_header_value("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
        const std::pair<std::string, std::string> submitted{"messaging_masstransit_message_type", "OrderSubmitted"};
        CHECK(test_support::SampleSum(scrape->body, "messaging_masstransit_saga_ea_total", {submitted}) == 1);
        CHECK(test_support::SampleSum(scrape->body, "messaging_masstransit_send_ea_total",
                                      {{"messaging_masstransit_message_type", "OrderCompleted"}}) == 1);
        // Health as gauges: the bus is in this process, its endpoint consumes.
        CHECK(test_support::SampleSum(scrape->body, "bus_broker_state", {{"state", "in-process"}}) == 1);
        CHECK(test_support::SampleSum(scrape->body, "bus_broker_state", {{"state", "connected"}}) == 0);
        CHECK(test_support::SampleSum(scrape->body, "bus_endpoint_consuming", {{"queue", "order-service"}}) == 1);
        auto post = api.client.Post("/metrics", "", "text/plain");
        REQUIRE(post);
        CHECK(post->status == 405);
        CHECK(Json::parse(post->body)["error"] == "method_not_allowed");
    }

    TEST_CASE("With Metrics.Enabled false nothing is recorded - GET /metrics is a JSON 404") {
        ApiFixture api(SystemOptions{.start_http = true, .metrics_enabled = false});
        REQUIRE(api.Post(R"({"orderId":"unmetered-3","customerNumber":"C","totalAmount":"1.00"})")->status == 202);
        REQUIRE(api.FinalStatus("unmetered-3") == "Completed");
        CHECK(api.system.orders().metrics() == nullptr);
        api.ExpectError(api.client.Get("/metrics"), 404, "");
    }

    TEST_CASE("Each scenario's final state is reached through GET") {
        ApiFixture api;
        for (const char* id : {"web-0", "web-1", "web-2", "web-3"})
            REQUIRE(api.Post(std::string(R"({"orderId":")") + id + R"(","customerNumber":"C","totalAmount":"12.34"})")
                        ->status == 202);
        CHECK(api.FinalStatus("web-3") == "Completed");
        CHECK(api.FinalStatus("web-0") == "Failed");
        CHECK(api.FinalStatus("web-1") == "Failed");
        CHECK(api.FinalStatus("web-2") == "Failed");
        auto reason = [&](const char* id) {
            return Json::parse(api.client.Get((std::string("/order/") + id).c_str())->body)["reason"];
        };
        CHECK(reason("web-0") == "Out of stock");
        CHECK(reason("web-1") == "Credit card limit exceeded");
        CHECK(reason("web-2") == "Payment faulted: Payment gateway unavailable");
        CHECK(reason("web-3").is_null());
        // Every message the POSTs and the saga stored in the outbox was confirmed, and its row removed.
        CHECK(test_support::WaitFor([&] {
            return api.system.loop().Invoke([&] { return api.system.orders().repository().PendingOutbox(1).empty(); });
        }));
    }
}
