// Contracts: exact JSON for every message, round trips, tolerant reading (case, decimals as strings
// or numbers), envelope ids in N/D/B forms, URN and exchange names, and clear errors for bad input.
#include <doctest/doctest.h>

#include <functional>

#include "Contracts/ExactJson.h"
#include "Contracts/Messages.h"
#include "Wire/Envelope.h"
#include "Wire/Faults.h"

using namespace contracts::literals;

using namespace contracts;

namespace {

template <class T>
void CheckRoundTrip(const T& message, const std::string& expected_json) {
    const std::string written = MessageContract<T>::Write(message).dump();
    CHECK(written == expected_json);
    CHECK(MessageContract<T>::Read(Json::parse(written)) == message);
}

const Timestamp kTime = *ParseIso8601("2026-02-10T14:03:05.412987Z");

// Every field of a read envelope as one line, or the reader's error: what the two envelope readers
// are held to.
std::string Describe(const std::function<messaging::Envelope()>& read) {
    try {
        const auto e = read();
        std::string types;
        for (const auto& type : e.message_type) types += type + ";";
        return e.message_id + "|" + e.request_id + "|" + e.correlation_id + "|" + e.conversation_id + "|" +
               e.initiator_id + "|" + e.source_address + "|" + e.destination_address + "|" + e.response_address + "|" +
               e.fault_address + "|" + types + "|" + e.message.dump() + "|" +
               (e.expiration_time ? FormatIso8601(*e.expiration_time) : "none") + "|" + FormatIso8601(e.sent_time) +
               "|" + e.headers.dump() + "|" + WriteHostInfo(e.host).dump();
    } catch (const messaging::EnvelopeError& error) {
        return std::string("error: ") + error.what();
    }
}

}  // namespace

TEST_SUITE("Contracts") {
    TEST_CASE("Decimal keeps its scale - compares by value and never overflows silently") {
        CHECK(Decimal::Parse("149.97")->ToString() == "149.97");
        CHECK(Decimal::Parse("150.00")->ToString() == "150.00");
        CHECK(Decimal::Parse("-0.5")->ToString() == "-0.5");
        CHECK(*Decimal::Parse("150.00") == *Decimal::Parse("150"));
        CHECK(*Decimal::Parse("0.1") < *Decimal::Parse("0.25"));
        CHECK((*Decimal::Parse("24.99") * 2 + *Decimal::Parse("99.99")).ToString() == "149.97");
        CHECK(Decimal::Parse("1.50")->SignificantScale() == 1);
        CHECK_FALSE(Decimal::Parse(""));
        CHECK_FALSE(Decimal::Parse("1e5"));
        CHECK_FALSE(Decimal::Parse("12.3.4"));
        CHECK_FALSE(Decimal::Parse("."));
        CHECK_FALSE(Decimal::Parse("1."));
        CHECK_FALSE(Decimal::Parse("1234567890123456789"));
        CHECK_THROWS_AS(*Decimal::Parse("900000000000000000") * 100, std::overflow_error);
    }

    TEST_CASE("Decimals are read from a string or a JSON number and written as strings") {
        CHECK(DecimalFromJson(Json("149.97"))->ToString() == "149.97");
        CHECK(DecimalFromJson(ParseJsonExact("149.97"))->ToString() == "149.97");
        CHECK(DecimalFromJson(Json::parse("150"))->ToString() == "150");
        // A number already rounded to a double is not trusted as money.
        CHECK_FALSE(DecimalFromJson(Json::parse("149.97")));
        // Integers past 18 digits are no decimal, whichever way they were read.
        CHECK_FALSE(DecimalFromJson(Json::parse("1000000000000000000")));
        CHECK_FALSE(DecimalFromJson(ParseJsonExact("100000000000000000000")));
        CHECK_FALSE(DecimalFromJson(Json::parse("true")));
        CHECK(DecimalToJson(*Decimal::Parse("10.50")).dump() == "\"10.50\"");
    }

    TEST_CASE("The exact reader keeps a fractional number's text - integers stay numbers") {
        NumberTexts numbers;
        const Json doc = ParseJsonExact(
            R"({"a":12345678901234567.89,"b":[1.50,2,"3.5",{"c":-0.1e2}],"d":true,"e":null,"f":18446744073709551616})",
            &numbers);
        REQUIRE(doc.is_object());
        CHECK(doc["a"] == "12345678901234567.89");
        CHECK(numbers.Contains(doc["a"]));
        CHECK(doc["b"][0] == "1.50");
        CHECK(numbers.Contains(doc["b"][0]));
        CHECK(doc["b"][1] == 2);
        CHECK(doc["b"][2] == "3.5");
        CHECK_FALSE(numbers.Contains(doc["b"][2]));  // a string in the text stays a string
        CHECK(doc["b"][3]["c"] == "-0.1e2");
        CHECK(doc["d"] == true);
        CHECK(doc["e"].is_null());
        CHECK(doc["f"] == "18446744073709551616");
        CHECK(ParseJsonExact("{\"a\":").is_discarded());
        CHECK(ParseJsonExact("[1,2").is_discarded());
        CHECK(ParseJsonExact("/* c */ {}", nullptr, /*ignore_comments=*/true).is_object());
    }

    TEST_CASE("Money is at most 2 decimals and 16 integer digits - what a numeric(18 2) column carries") {
        CHECK(IsMoney(*Decimal::Parse("9999999999999999.99")));
        CHECK(IsMoney(*Decimal::Parse("-9999999999999999.99")));
        CHECK(IsMoney(*Decimal::Parse("0.01")));
        CHECK(IsMoney(*Decimal::Parse("150")));
        CHECK_FALSE(IsMoney(*Decimal::Parse("10000000000000000")));
        // 19 digits are more than Decimal::Parse takes; the same value built from its units is not money either.
        CHECK_FALSE(Decimal::Parse("10000000000000000.00"));
        CHECK_FALSE(IsMoney(Decimal::FromUnits(1'000'000'000'000'000'000, 2)));
        CHECK_FALSE(IsMoney(*Decimal::Parse("1.500")));
        CHECK_FALSE(IsMoney(*Decimal::Parse("0.001")));
    }

    TEST_CASE("GUIDs are read in the N D B and P forms and written lowercase D") {
        const std::string d = "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31";
        CHECK(Guid::Parse(d)->ToString() == d);
        CHECK(Guid::Parse("6F1C2A9E3B7D4C559A1E2D8F0C4B7E31")->ToString() == d);
        CHECK(Guid::Parse("{6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31}")->ToString() == d);
        CHECK(Guid::Parse("(6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31)")->ToString() == d);
        CHECK_FALSE(Guid::Parse("6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e3"));
        CHECK_FALSE(Guid::Parse("zf1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31"));
        CHECK(Guid::New() != Guid::New());
        CHECK(Guid::New().ToString()[14] == '4');
    }

    TEST_CASE("Timestamps are ISO-8601 UTC with Z and trailing zeros dropped") {
        CHECK(FormatIso8601(kTime) == "2026-02-10T14:03:05.412987Z");
        CHECK(FormatIso8601(*ParseIso8601("2026-02-10T14:03:05.5000000Z")) == "2026-02-10T14:03:05.5Z");
        CHECK(FormatIso8601(*ParseIso8601("2026-02-10T14:03:05Z")) == "2026-02-10T14:03:05Z");
        CHECK(FormatIso8601(*ParseIso8601("2026-02-10T16:03:05+02:00")) == "2026-02-10T14:03:05Z");
        // Every field zero-padded, and a fraction of one microsecond.
        using namespace std::chrono;
        const Timestamp early = sys_days{year{987} / 1 / 2} + hours{3} + minutes{4} + seconds{5} + microseconds{1};
        CHECK(FormatIso8601(early) == "0987-01-02T03:04:05.000001Z");
        CHECK(FormatIso8601(sys_days{year{2026} / 12 / 31} + hours{23} + minutes{59} + seconds{59} +
                            microseconds{999990}) == "2026-12-31T23:59:59.99999Z");
        CHECK_FALSE(ParseIso8601("2026-02-30T14:03:05Z"));
        CHECK_FALSE(ParseIso8601("yesterday"));
    }

    TEST_CASE("Order ids are 1-64 characters of [A-Za-z0-9_-]") {
        CHECK(IsValidOrderId("order-123_X"));
        CHECK(IsValidOrderId(std::string(64, 'a')));
        CHECK_FALSE(IsValidOrderId(""));
        CHECK_FALSE(IsValidOrderId(std::string(65, 'a')));
        CHECK_FALSE(IsValidOrderId("a b"));
        CHECK_FALSE(IsValidOrderId("../etc"));
    }

    TEST_CASE("An OrderId can only hold a valid id") {
        CHECK(OrderId::Parse("order-123_X")->str() == "order-123_X");
        CHECK_FALSE(OrderId::Parse(""));
        CHECK_FALSE(OrderId::Parse("a b"));
        CHECK(IsValidOrderId(OrderId::New().str()));
        CHECK(Guid::Parse(OrderId::New().str()));
        CHECK_THROWS_AS(operator""_order_id("../etc", 6), std::invalid_argument);
        CHECK(OrderId() != "x"_order_id);
        CHECK(OrderId().empty());
        // A message read from the wire with an invalid id is refused, naming the field.
        CHECK_THROWS_WITH_AS(MessageContract<StockReserved>::Read(Json{{"orderId", "a b"}}),
                             doctest::Contains("orderId"), ContractError);
    }

    TEST_CASE("URNs and exchange names follow MassTransit's formatters") {
        CHECK(ContractName("OrderSubmitted").Urn() == "urn:message:Contracts:OrderSubmitted");
        CHECK(ContractName("OrderSubmitted").EntityName() == "Contracts:OrderSubmitted");
        CHECK(FaultOf(ContractName("CheckInventory")).Urn() ==
              "urn:message:MassTransit:Fault[[Contracts:CheckInventory]]");
        CHECK(FaultOf(ContractName("CheckInventory")).EntityName() == "MassTransit:Fault--Contracts:CheckInventory--");
        CHECK(FaultOf(ContractName("CheckInventory")).DotNetName() == "MassTransit.Fault<Contracts.CheckInventory>");
        // A generic argument in the generic's own namespace is written without it.
        MessageTypeName envelope{"Contracts", "Envelope", {ContractName("Item")}};
        CHECK(envelope.EntityName() == "Contracts:Envelope--Item--");
        MessageTypeName pair{"Contracts", "Pair", {ContractName("A"), MessageTypeName{"Other", "B", {}}}};
        CHECK(pair.EntityName() == "Contracts:Pair--A::Other:B--");
        CHECK(pair.Urn() == "urn:message:Contracts:Pair[[Contracts:A],[Other:B]]");
        CHECK(MessageContract<Fault<ProcessPayment>>::MessageTypes() ==
              std::vector<std::string>{"urn:message:MassTransit:Fault[[Contracts:ProcessPayment]]",
                                       "urn:message:MassTransit:Fault"});
        CHECK(IsValidEntityName("MassTransit:Fault--Contracts:X--"));
        CHECK_FALSE(IsValidEntityName("bad name"));
    }

    TEST_CASE("Every message is written exactly and reads back equal") {
        const Decimal price = *Decimal::Parse("24.99");
        CheckRoundTrip(
            OrderSubmitted{.order_id = "o-1"_order_id,
                           .timestamp = kTime,
                           .customer_number = "CUST-42",
                           .total_amount = *Decimal::Parse("49.98"),
                           .items = {{"SKU-1", 2, price}}},
            R"({"orderId":"o-1","timestamp":"2026-02-10T14:03:05.412987Z","customerNumber":"CUST-42","totalAmount":"49.98","items":[{"sku":"SKU-1","quantity":2,"unitPrice":"24.99"}]})");
        CheckRoundTrip(CheckInventory{.order_id = "o-1"_order_id, .items = {{"SKU-1", 2, price}}},
                       R"({"orderId":"o-1","items":[{"sku":"SKU-1","quantity":2,"unitPrice":"24.99"}]})");
        CheckRoundTrip(StockReserved{.order_id = "o-1"_order_id}, R"({"orderId":"o-1"})");
        CheckRoundTrip(StockShortage{.order_id = "o-1"_order_id, .reason = "Out of stock"},
                       R"({"orderId":"o-1","reason":"Out of stock"})");
        CheckRoundTrip(
            ProcessPayment{.order_id = "o-1"_order_id, .amount = *Decimal::Parse("149.97"), .card_number = "tok_1"},
            R"({"orderId":"o-1","amount":"149.97","cardNumber":"tok_1"})");
        CheckRoundTrip(PaymentAccepted{.order_id = "o-1"_order_id, .transaction_id = "tx-9"},
                       R"({"orderId":"o-1","transactionId":"tx-9"})");
        CheckRoundTrip(PaymentFailed{.order_id = "o-1"_order_id, .reason = "Credit card limit exceeded"},
                       R"({"orderId":"o-1","reason":"Credit card limit exceeded"})");
        CheckRoundTrip(OrderTimeoutExpired{.order_id = "o-1"_order_id}, R"({"orderId":"o-1"})");
        CheckRoundTrip(OrderCompleted{.order_id = "o-1"_order_id}, R"({"orderId":"o-1"})");
        CheckRoundTrip(OrderFailed{.order_id = "o-1"_order_id, .reason = "Out of stock"},
                       R"({"orderId":"o-1","reason":"Out of stock"})");
        CheckRoundTrip(ReleaseStock{.order_id = "o-1"_order_id, .reason = "timeout"},
                       R"({"orderId":"o-1","reason":"timeout"})");
        CheckRoundTrip(StockReleased{.order_id = "o-1"_order_id}, R"({"orderId":"o-1"})");
    }

    TEST_CASE("PascalCase keys - numbers for decimals and unknown fields are accepted") {
        const auto m = MessageContract<OrderSubmitted>::Read(ParseJsonExact(
            R"({"OrderId":"o-2","Timestamp":"2026-02-10T14:03:05Z","CustomerNumber":"C","TotalAmount":149.97,"Extra":{"x":1}})"));
        CHECK(m.order_id.str() == "o-2");
        CHECK(m.customer_number == "C");
        CHECK(m.total_amount.ToString() == "149.97");
        CHECK(m.items.empty());
        CHECK(MessageContract<ProcessPayment>::Read(Json::parse(R"({"ORDERID":"o-3","Amount":"10"})")).amount ==
              *Decimal::Parse("10.00"));
    }

    TEST_CASE("A missing or malformed required field is rejected with a clear error") {
        CHECK_THROWS_WITH_AS(
            MessageContract<OrderSubmitted>::Read(Json::parse(R"({"orderId":"o-1","totalAmount":"1"})")),
            "OrderSubmitted.customerNumber: required field is missing", ContractError);
        CHECK_THROWS_WITH_AS(MessageContract<ProcessPayment>::Read(Json::parse(R"({"orderId":"o-1","amount":"abc"})")),
                             doctest::Contains("ProcessPayment.amount: must be an amount"), ContractError);
        // An amount outside what every store and peer carries is refused in a message too.
        for (const char* amount : {R"("10000000000000000")", R"("0.001")", "12345678901234567.89"})
            CHECK_THROWS_WITH_AS(MessageContract<ProcessPayment>::Read(
                                     ParseJsonExact(std::string(R"({"orderId":"o-1","amount":)") + amount + "}")),
                                 doctest::Contains("at most 2 decimals and at most 16 digits"), ContractError);
        CHECK_THROWS_WITH_AS(MessageContract<StockReserved>::Read(Json::parse(R"({"orderId":"bad id!"})")),
                             doctest::Contains("StockReserved.orderId"), ContractError);
        CHECK_THROWS_AS(MessageContract<StockReserved>::Read(Json::parse("[1,2]")), ContractError);
        CHECK_THROWS_WITH_AS(MessageContract<CheckInventory>::Read(Json::parse(
                                 R"({"orderId":"o","items":[{"sku":"a","quantity":"2","unitPrice":"1"}]})")),
                             doctest::Contains("OrderItem.quantity: must be an integer"), ContractError);
    }

    TEST_CASE("Fault<T> is written with MassTransit's fields and read back") {
        Fault<ProcessPayment> fault;
        fault.fault_id = *Guid::Parse("0b4e0000-5a1c-0015-1e44-08de49a2c3ab");
        fault.faulted_message_id = "0b4e0000-5a1c-0015-77aa-08de49a2c2b0";
        fault.timestamp = kTime;
        fault.exceptions.push_back(
            ExceptionInfo{"payment_service.PaymentGatewayUnavailable", nullptr, "   at X", "down", "PaymentService"});
        fault.fault_message_types = {"urn:message:Contracts:ProcessPayment"};
        fault.message =
            ProcessPayment{.order_id = "o-2"_order_id, .amount = *Decimal::Parse("5.00"), .card_number = "tok"};
        const auto json = MessageContract<Fault<ProcessPayment>>::Write(fault);
        CHECK(json["faultId"] == "0b4e0000-5a1c-0015-1e44-08de49a2c3ab");
        CHECK(json["exceptions"][0]["exceptionType"] == "payment_service.PaymentGatewayUnavailable");
        CHECK(json["exceptions"][0]["innerException"].is_null());
        CHECK(json["message"]["amount"] == "5.00");
        const auto back = MessageContract<Fault<ProcessPayment>>::Read(Json::parse(json.dump()));
        CHECK(back.message == fault.message);
        CHECK(back.exceptions.at(0).message == "down");
        CHECK(back.faulted_message_id == fault.faulted_message_id);
    }
}

TEST_SUITE("Contracts.Envelope") {
    TEST_CASE("The envelope is written with every field - nulls for unused ones") {
        messaging::Envelope envelope;
        envelope.message_id = "0b4e0000-5a1c-0015-9d3f-08de49a2c1f7";
        envelope.conversation_id = "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7";
        envelope.source_address = "rabbitmq://localhost/bus?temporary=true";
        envelope.destination_address = "rabbitmq://localhost/Contracts:StockReserved";
        envelope.message_type = {"urn:message:Contracts:StockReserved"};
        envelope.sent_time = kTime;
        envelope.host.machine_name = "apphost";
        envelope.host.process_id = 4711;
        const auto json = Json::parse(
            messaging::SerializeEnvelope(envelope, MessageContract<StockReserved>::Write({"o-1"_order_id})));
        std::vector<std::string> keys;
        for (auto it = json.begin(); it != json.end(); ++it) keys.push_back(it.key());
        std::sort(keys.begin(), keys.end());
        CHECK(keys == std::vector<std::string>{"conversationId", "correlationId", "destinationAddress",
                                               "expirationTime", "faultAddress", "headers", "host", "initiatorId",
                                               "message", "messageId", "messageType", "requestId", "responseAddress",
                                               "sentTime", "sourceAddress"});
        CHECK(json["requestId"].is_null());
        CHECK(json["correlationId"].is_null());
        CHECK(json["expirationTime"].is_null());
        CHECK(json["headers"].is_object());
        CHECK(json["sentTime"] == "2026-02-10T14:03:05.412987Z");
        CHECK(json["host"]["processId"] == 4711);
        CHECK(json["message"]["orderId"] == "o-1");
    }

    TEST_CASE("The envelope writer's text is exactly what a JSON object of the same fields dumps") {
        // The reference: the envelope as an ordered JSON object, dumped by nlohmann (invalid UTF-8 replaced).
        auto reference = [](const messaging::Envelope& e, const OrderedJson& message) {
            auto nullable = [](const std::string& v) { return v.empty() ? OrderedJson() : OrderedJson(v); };
            OrderedJson json;
            json["messageId"] = nullable(e.message_id);
            json["requestId"] = nullable(e.request_id);
            json["correlationId"] = nullable(e.correlation_id);
            json["conversationId"] = nullable(e.conversation_id);
            json["initiatorId"] = nullable(e.initiator_id);
            json["sourceAddress"] = nullable(e.source_address);
            json["destinationAddress"] = nullable(e.destination_address);
            json["responseAddress"] = nullable(e.response_address);
            json["faultAddress"] = nullable(e.fault_address);
            json["messageType"] = e.message_type;
            json["message"] = message;
            json["expirationTime"] = e.expiration_time ? OrderedJson(FormatIso8601(*e.expiration_time)) : OrderedJson();
            json["sentTime"] = FormatIso8601(e.sent_time);
            json["headers"] = OrderedJson(e.headers);
            json["host"] = WriteHostInfo(e.host);
            return json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        };
        messaging::Envelope envelope;
        envelope.message_id = "0b4e0000-5a1c-0015-9d3f-08de49a2c1f7";
        envelope.correlation_id = "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31";
        envelope.source_address = "rabbitmq://localhost/order-service";
        envelope.message_type = {"urn:message:Contracts:StockReserved", "urn:message:Contracts:Other"};
        envelope.sent_time = kTime;
        envelope.host.machine_name = "app\"host\\\n\t\x01\x7f";
        envelope.host.process_id = 4711;
        const OrderedJson message = MessageContract<StockReserved>::Write({"o-1"_order_id});
        CHECK(messaging::SerializeEnvelope(envelope, message) == reference(envelope, message));

        // Every field set, headers, control characters, UTF-8 and invalid UTF-8 (replaced, as nlohmann does).
        envelope.request_id = "0b4e0000-5a1c-0015-0000-08de49a2c1f7";
        envelope.conversation_id = "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7";
        envelope.initiator_id = "0b4e0000-5a1c-0015-1111-08de49a2c1f7";
        envelope.destination_address = "rabbitmq://localhost/Contracts:Caf\u00e9";
        envelope.response_address = "rabbitmq://localhost/r?q=\"x\"\b\f\r\x1f\\";
        envelope.fault_address = std::string("rabbitmq://localhost/bad\xff\xfe");
        envelope.expiration_time = kTime + std::chrono::seconds(30);
        envelope.headers = Json{{"MT-Reason", "fault"}, {"Count", 3}, {"Flag", true}, {"Text", "line\nnext"}};
        envelope.host.process_name = "Order\u00dfervice";
        CHECK(messaging::SerializeEnvelope(envelope, message) == reference(envelope, message));

        // A second host on the same thread is written as itself, not as the first one.
        envelope.host.machine_name = "other-box";
        CHECK(messaging::SerializeEnvelope(envelope, message) == reference(envelope, message));
        CHECK(Json::parse(messaging::SerializeEnvelope(envelope, message))["host"]["machineName"] == "other-box");
    }

    TEST_CASE("The envelope scanner reads what SerializeEnvelope writes - as the DOM reader does") {
        messaging::Envelope envelope;
        envelope.message_id = "0b4e0000-5a1c-0015-9d3f-08de49a2c1f7";
        envelope.correlation_id = "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31";
        envelope.conversation_id = "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7";
        envelope.source_address = "rabbitmq://localhost/order-service";
        envelope.destination_address = "rabbitmq://localhost/Contracts:CheckInventory";
        envelope.message_type = {"urn:message:Contracts:CheckInventory", "urn:message:Contracts:Command"};
        envelope.expiration_time = kTime + std::chrono::seconds(30);
        envelope.sent_time = kTime;
        envelope.headers = Json{{"MT-Reason", "fault"}, {"Count", 3}};
        envelope.host = messaging::CurrentHostInfo("OrderService");
        const OrderedJson message = {{"orderId", "o-1"},
                                     {"items", {{{"sku", "SKU-1"}, {"quantity", 2}, {"unitPrice", "24.95"}}}},
                                     {"note", "a \"quoted\" /path} with ] brackets"}};
        for (const std::string& body : {messaging::SerializeEnvelope(envelope, message),
                                        Json::parse(messaging::SerializeEnvelope(envelope, message)).dump(2)}) {
            CAPTURE(body);
            const auto scanned = messaging::detail::ScanEnvelope(body);
            REQUIRE(scanned.has_value());
            CHECK(Describe([&] { return *scanned; }) ==
                  Describe([&] { return messaging::detail::ParseEnvelopeDom(body); }));
            CHECK(scanned->host == envelope.host);
            CHECK(scanned->message["note"] == "a \"quoted\" /path} with ] brackets");
        }
    }

    TEST_CASE("ParseEnvelope gives the DOM reader's envelope or error for every body") {
        const std::string id = R"("messageId":"0b4e0000-5a1c-0015-9d3f-08de49a2c1f7")";
        const std::string types = R"("messageType":["urn:message:Contracts:StockReserved"])";
        const std::string message = R"("message":{"orderId":"o-1"})";
        const std::string core = id + "," + types + "," + message;
        const std::vector<std::string> bodies = {
            "{" + core + "}",
            " \n\t{ " + core + " } \r\n",
            "{" + core + R"(,"headers":{},"host":null,"sentTime":null,"expirationTime":null})",
            "{" + core + R"(,"sourceAddress":"","requestId":"","headers":null})",
            "{" + core + R"(,"headers":{"a":[1,{"b":"}"}],"c":null}})",
            "{" + core + R"(,"host":{"machineName":"vm","processId":-0,"assembly":null}})",
            "{" + core + R"(,"host":{}})",
            "{" + core + R"(,"sentTime":"2026-02-10T14:03:05.412987Z","expirationTime":"2026-02-10T14:03:35Z"})",
            "{" + core + R"(,"correlationId":"6F1C2A9E3B7D4C559A1E2D8F0C4B7E31"})",
            "{" + core + R"(,"conversationId":"{0b4e0000-5a1c-0015-a2b6-08de49a2c1f7}"})",
            // Headers of plain strings are read by the scanner itself (a repeated name keeps the last
            // value); any other value sends the headers through the JSON parser.
            "{" + core + R"(,"headers":{"MT-Activity-Id":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}})",
            "{" + core + R"(,"headers":{ "a" : "x" , "b":"y", "a":"z" }})",
            "{" + core + R"(,"headers":{"a":"x","b":3,"c":"line\nnext"}})",
            // Bodies the scanner leaves to the DOM reader, which accepts them.
            "{" + core + R"(,"MessageId":"6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31"})",
            "{" + core + R"(,"messageId":"6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31"})",
            R"({"messageId":null,"MessageId":"6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31",)" + types + "," + message + "}",
            "{" + core + R"(,"sourceAddress":"rabbitmq:\/\/localhost\/q"})",
            "{" + core + R"(,"host":{"machineName":"k\u00f6nig","processId":1.5}})",
            "{" + core + R"(,"host":{"machineName":"vm","processId":"12","extra":true}})",
            "{" + core + R"(,"host":{"processId":12345678901234567890}})",
            "{" + core + R"(,"host":{"processId":1,"processId":2}})",
            "{" + core + R"(,"host":"vm"})",
            "{" + core + R"(,"headers":[1,2]})",
            "{" + core + R"(,"headers":"x"})",
            "{" + core + R"(,"somethingNew":[1,2,3]})",
            "{" + core + " /* a comment */}",
            "{" + id + "," + types + R"(,"message":{"orderId":"o-1" /* here */}})",
            "{" + id + "," + types + R"(,"message":"just text"})",
            "\xEF\xBB\xBF{" + core + "}",
            // Bodies both reject.
            "",
            "42",
            "{}",
            "{" + core,
            "{" + core + "}x",
            "{" + core + ",}",
            "{" + id + "," + types + R"(,"message":null})",
            "{" + id + "," + types + R"(,"message":{"orderId":"o-1"]})",
            "{" + id + "," + message + "}",
            "{" + id + "," + message + R"(,"messageType":[]})",
            "{" + id + "," + message + R"(,"messageType":[1]})",
            "{" + id + "," + message + R"(,"messageType":"urn:x"})",
            "{" + types + "," + message + R"(,"messageId":"42"})",
            "{" + types + "," + message + R"(,"messageId":7})",
            "{" + core + R"(,"sourceAddress":"relative/path"})",
            "{" + core + R"(,"sentTime":""})",
            "{" + core + R"(,"sentTime":"yesterday"})",
            "{" + core + R"(,"expirationTime":5})",
            "{" + core + R"(,"host":{"processId":00}})",
            "{" + core + R"(,"host":{"processId":12x}})",
            "{" + core + R"(,"sourceAddress":"tab	inside"})",
        };
        for (std::size_t i = 0; i < bodies.size(); ++i) {
            const auto& body = bodies[i];
            CAPTURE(body);
            // The first thirteen take the scanner; every other body goes to the DOM reader.
            CHECK(messaging::detail::ScanEnvelope(body).has_value() == (i < 13));
            CHECK(Describe([&] { return messaging::ParseEnvelope(body); }) ==
                  Describe([&] { return messaging::detail::ParseEnvelopeDom(body); }));
        }
    }

    TEST_CASE("Envelope ids in the N D and B forms are accepted and normalized") {
        const auto envelope = messaging::ParseEnvelope(R"({
            "MessageId": "0B4E00005A1C00159D3F08DE49A2C1F7",
            "ConversationId": "{0b4e0000-5a1c-0015-a2b6-08de49a2c1f7}",
            "CorrelationId": "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31",
            "MessageType": ["urn:message:Contracts:StockReserved"],
            "Message": {"OrderId": "x"},
            "Headers": {"Custom": 5, "Flag": true},
            "Host": {"MachineName": "dotnet-box", "ProcessId": 12},
            "SomethingNew": [1, 2, 3]
        })");
        CHECK(envelope.message_id == "0b4e0000-5a1c-0015-9d3f-08de49a2c1f7");
        CHECK(envelope.conversation_id == "0b4e0000-5a1c-0015-a2b6-08de49a2c1f7");
        CHECK(envelope.correlation_id == "6f1c2a9e-3b7d-4c55-9a1e-2d8f0c4b7e31");
        CHECK(envelope.host.machine_name == "dotnet-box");
        CHECK(envelope.headers["Custom"] == 5);
    }

    TEST_CASE("The minimal body MassTransit accepts is accepted") {
        const auto envelope = messaging::ParseEnvelope(
            R"({"messageType":["urn:message:Contracts:StockReserved"],"message":{"orderId":"a"}})");
        CHECK(envelope.message_id.empty());
        CHECK(envelope.message["orderId"] == "a");
    }

    TEST_CASE("Malformed envelopes are rejected with the reason") {
        CHECK_THROWS_WITH_AS(messaging::ParseEnvelope("{not json"), "the message body is not valid JSON",
                             messaging::EnvelopeError);
        CHECK_THROWS_WITH_AS(messaging::ParseEnvelope(R"({"message":{}})"), "envelope messageType is missing",
                             messaging::EnvelopeError);
        CHECK_THROWS_WITH_AS(messaging::ParseEnvelope(R"({"messageId":"42","messageType":["x"],"message":{}})"),
                             doctest::Contains("messageId is not a GUID"), messaging::EnvelopeError);
        CHECK_THROWS_WITH_AS(
            messaging::ParseEnvelope(R"({"sourceAddress":"relative/path","messageType":["x"],"message":{}})"),
            doctest::Contains("not an absolute URI"), messaging::EnvelopeError);
    }
}

TEST_SUITE("Contracts.Faults") {
    TEST_CASE("An _error copy's headers say what failed - where - and on which host - as MassTransit writes them") {
        HostInfo host;
        host.machine_name = "box";
        host.process_id = 42;
        messaging::HeaderTable headers;
        messaging::ErrorCopyFacts facts{.exception_type = "payment_service.GatewayUnavailable",
                                        .exception_message = std::string(3000, 'm'),
                                        .input_address = "rabbitmq://localhost/payment-service",
                                        .stack_trace = "   at PaymentConsumer.Consume(Contracts.ProcessPayment)",
                                        .consumer_type = "PaymentConsumer",
                                        .message_type = "Contracts.ProcessPayment",
                                        .retry_count = 3};
        messaging::StampErrorHeaders(headers, facts, host);
        auto text = [&](const char* name) { return messaging::HeaderToString(headers.at(name)); };
        CHECK(text("MT-Reason") == "fault");
        CHECK(text("MT-Fault-ExceptionType") == "payment_service.GatewayUnavailable");
        CHECK(text("MT-Fault-Message").size() == messaging::kMaxFaultHeaderText);
        CHECK(text("MT-Fault-InputAddress") == "rabbitmq://localhost/payment-service");
        CHECK(text("MT-Fault-ConsumerType") == "PaymentConsumer");
        CHECK(text("MT-Fault-MessageType") == "Contracts.ProcessPayment");
        CHECK(std::get<std::int32_t>(headers.at("MT-Fault-RetryCount")) == 3);
        CHECK(text("MT-Host-MachineName") == "box");
        CHECK(text("MT-Host-ProcessId") == "42");
        CHECK(ParseIso8601(text("MT-Fault-Timestamp")));

        // No consumer reached (an unreadable envelope) and no retries: those headers are left out.
        messaging::HeaderTable unread;
        messaging::StampErrorHeaders(unread, {.exception_type = "x", .stack_trace = "   at y"}, host);
        CHECK(unread.count("MT-Fault-ConsumerType") == 0);
        CHECK(unread.count("MT-Fault-MessageType") == 0);
        CHECK(unread.count("MT-Fault-RetryCount") == 0);

        messaging::HeaderTable skipped;
        messaging::StampSkippedHeaders(skipped, host);
        CHECK(messaging::HeaderToString(skipped.at("MT-Reason")) == "dead-letter");
        CHECK(skipped.count("MT-Fault-ExceptionType") == 0);
    }

    TEST_CASE("A Fault<T> body carries the consumed message as its sender wrote it") {
        const std::string body = R"({"messageId":"m","message":{"orderId":"o-1","Amount":"5.00","cardNumber":"t"}})";
        ExceptionInfo exception;
        exception.exception_type = "System.Exception";
        exception.message = "boom";
        const auto fault =
            messaging::WriteFaultBody("m", exception, HostInfo{}, {"urn:message:Contracts:ProcessPayment"},
                                      messaging::MessageAsWritten(body, Json::object()));
        CHECK(fault["faultedMessageId"] == "m");
        CHECK(fault["message"].dump() == R"({"orderId":"o-1","Amount":"5.00","cardNumber":"t"})");
        CHECK(fault["faultMessageTypes"][0] == "urn:message:Contracts:ProcessPayment");
        CHECK(fault["exceptions"][0]["message"] == "boom");
        CHECK(Guid::Parse(fault["faultId"].get<std::string>()));
        CHECK(messaging::WriteFaultBody("", exception, HostInfo{}, {}, {})["faultedMessageId"].is_null());
    }
}
