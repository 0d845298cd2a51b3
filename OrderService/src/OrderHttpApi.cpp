#include "OrderService/OrderHttpApi.h"
#include "OrderService/OpenApiDocument.h"

#include <spdlog/spdlog.h>

#include "Contracts/ExactJson.h"
#include "Hosting/JsonResponses.h"

namespace order_service {
namespace {

using contracts::Json;
using contracts::OrderedJson;

using messaging::ErrorResponse;
using messaging::HttpRequest;
using messaging::HttpResponder;
using messaging::HttpResponse;
using messaging::JsonResponse;
using messaging::MethodNotAllowed;

bool IsJsonContentType(const std::string& value) {
    std::string type = value.substr(0, value.find(';'));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return type == "application/json" || (type.size() > 5 && type.compare(type.size() - 5, 5, "+json") == 0);
}

// An amount within MoneyLimits, from a JSON string or a JSON number (whose text ParseJsonExact kept).
std::optional<contracts::Decimal> ReadMoney(const Json& value) {
    auto amount = contracts::DecimalFromJson(value);
    if (!amount || !contracts::IsMoney(*amount)) return std::nullopt;
    return amount;
}

}  // namespace

std::variant<NewOrder, FieldError> ParseNewOrder(std::string_view text) {
    // Read exactly: an amount written as a JSON number keeps its text, never becoming a double.
    contracts::NumberTexts numbers;
    const Json body = contracts::ParseJsonExact(text, &numbers);
    // A string field, which a number kept as its text is not.
    auto is_text = [&numbers](const Json& value) { return value.is_string() && !numbers.Contains(value); };
    if (body.is_discarded()) return FieldError{"", "the body is not valid JSON"};
    if (!body.is_object()) return FieldError{"", "the body must be a JSON object"};
    static const std::vector<std::string> kFields = {"orderId", "customerNumber", "totalAmount", "items"};
    for (auto it = body.begin(); it != body.end(); ++it) {
        bool known = false;
        for (const auto& field : kFields) known = known || contracts::EqualsIgnoreCase(field, it.key());
        if (!known)
            return FieldError{it.key(),
                              "is not a field of an order (expected orderId, customerNumber, totalAmount, items)"};
    }

    NewOrder order;
    if (const Json* id = contracts::FindField(body, "orderId")) {
        auto order_id = is_text(*id) ? contracts::OrderId::Parse(id->get_ref<const std::string&>()) : std::nullopt;
        if (!order_id) return FieldError{"orderId", "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"};
        order.order_id = std::move(*order_id);
    } else {
        order.order_id = contracts::OrderId::New();
    }

    const Json* customer = contracts::FindField(body, "customerNumber");
    if (!customer) return FieldError{"customerNumber", "is required"};
    if (!is_text(*customer) || customer->get_ref<const std::string&>().empty() ||
        customer->get_ref<const std::string&>().size() > 256)
        return FieldError{"customerNumber", "must be a string of 1-256 characters"};
    order.customer_number = customer->get<std::string>();

    const Json* total = contracts::FindField(body, "totalAmount");
    if (!total) return FieldError{"totalAmount", "is required"};
    auto amount = ReadMoney(*total);
    if (!amount || !amount->IsPositive())
        return FieldError{"totalAmount", std::string("must be a positive amount with ") +
                                             contracts::MoneyLimits::kRule + ", e.g. 149.97 or \"149.97\""};
    order.total_amount = *amount;

    if (const Json* items = contracts::FindField(body, "items")) {
        if (!items->is_array()) return FieldError{"items", "must be an array"};
        if (items->size() > 1000) return FieldError{"items", "must hold at most 1000 items"};
        for (std::size_t i = 0; i < items->size(); ++i) {
            const Json& item = (*items)[i];
            const std::string where = "items[" + std::to_string(i) + "]";
            if (!item.is_object()) return FieldError{where, "must be an object"};
            const Json* sku = contracts::FindField(item, "sku");
            if (!sku || !is_text(*sku) || sku->get_ref<const std::string&>().empty() ||
                sku->get_ref<const std::string&>().size() > 64)
                return FieldError{where + ".sku", "must be a string of 1-64 characters"};
            const Json* quantity = contracts::FindField(item, "quantity");
            if (!quantity || !quantity->is_number_integer() || quantity->get<std::int64_t>() < 1 ||
                quantity->get<std::int64_t>() > 1000000)
                return FieldError{where + ".quantity", "must be an integer from 1 to 1000000"};
            const Json* price = contracts::FindField(item, "unitPrice");
            auto unit_price = price ? ReadMoney(*price) : std::nullopt;
            if (!unit_price || *unit_price < contracts::Decimal())
                return FieldError{where + ".unitPrice",
                                  std::string("must be a non-negative amount with ") + contracts::MoneyLimits::kRule};
            order.items.push_back({sku->get<std::string>(), quantity->get<std::int64_t>(), *unit_price});
        }
    }
    return order;
}

OrderedJson OrderToJson(const OrderRecord& order) {
    OrderedJson json;
    json["orderId"] = order.order_id.str();
    json["status"] = StatusName(order.status);
    json["reason"] = order.reason.empty() ? OrderedJson() : OrderedJson(order.reason);
    json["customerNumber"] = order.customer_number;
    json["totalAmount"] = order.total_amount.ToString();
    json["items"] = contracts::WriteOrderItems(order.items);
    json["transactionId"] = order.transaction_id.empty() ? OrderedJson() : OrderedJson(order.transaction_id);
    json["createdAt"] = contracts::FormatIso8601(order.created_at);
    json["updatedAt"] = contracts::FormatIso8601(order.updated_at);
    return json;
}

OrderHttpApi::OrderHttpApi(messaging::EventLoop& loop, OrderSubmission& submission, OrderLookup& lookup,
                           messaging::HealthProbe health, metrics::MetricsRegistry* metrics, HttpSettings settings)
    : loop_(loop),
      submission_(submission),
      lookup_(lookup),
      health_(std::move(health)),
      metrics_(metrics),
      settings_(std::move(settings)),
      swagger_ui_(settings_.swagger_ui_dir) {}

OrderHttpApi::~OrderHttpApi() {
    // The server's handles and the retries' liveness belong to the loop thread.
    if (server_ && !loop_.IsLoopThread())
        loop_.Invoke([this] {
            server_.reset();
            alive_.reset();
        });
    server_.reset();
    alive_.reset();
}

void OrderHttpApi::Start() {
    loop_.Invoke([this] {
        messaging::HttpServerOptions options;
        options.host = settings_.host;
        options.port = settings_.port;
        options.limits.max_body_bytes = static_cast<std::size_t>(settings_.max_body_bytes);
        options.request_timeout = std::chrono::milliseconds(settings_.request_timeout_ms);
        options.idle_timeout = std::chrono::seconds(settings_.idle_timeout_seconds);
        options.receive_timeout = std::chrono::milliseconds(settings_.receive_timeout_ms);
        options.max_connections = static_cast<std::size_t>(settings_.max_connections);
        options.max_connections_per_client = static_cast<std::size_t>(settings_.max_connections_per_client);
        options.metrics = metrics_;
        auto server = std::make_unique<messaging::HttpServer>(
            loop_, options, [this](HttpRequest request, HttpResponder responder) { Route(request, responder); },
            messaging::ServerErrorResponse);
        port_ = server->Listen();
        server_ = std::move(server);
    });
    spdlog::info("HTTP API listening on http://{}:{} (POST /order, GET /order/{{orderId}})", settings_.host, port_);
}

void OrderHttpApi::StopAccepting() {
    if (loop_.IsLoopThread()) {
        if (server_) server_->StopAccepting();
        return;
    }
    loop_.Post([this] {
        if (server_) server_->StopAccepting();
    });
}

void OrderHttpApi::Route(const HttpRequest& request, const HttpResponder& responder) {
    const std::string& path = request.path;
    static constexpr std::string_view kOrderPrefix = "/order/";
    if (path == "/order") {
        responder.SetRoute("/order");
        if (request.method != "POST") return responder.Send(MethodNotAllowed(request, "POST"));
        return PostOrder(request, responder);
    }
    if (path.size() > kOrderPrefix.size() && path.compare(0, kOrderPrefix.size(), kOrderPrefix) == 0 &&
        path.find('/', kOrderPrefix.size()) == std::string::npos) {
        responder.SetRoute("/order/{orderId}");
        if (request.method != "GET" && request.method != "HEAD")
            return responder.Send(MethodNotAllowed(request, "GET"));
        return responder.Send(GetOrder(path.substr(kOrderPrefix.size())));
    }
    if (path == "/openapi.json") {
        responder.SetRoute("/openapi.json");
        if (request.method != "GET" && request.method != "HEAD")
            return responder.Send(MethodNotAllowed(request, "GET"));
        HttpResponse document;
        document.body = std::string(OpenApiDocument());
        return responder.Send(std::move(document));
    }
    if (auto answer = swagger_ui_.Answer(request)) {
        responder.SetRoute("/swagger");
        return responder.Send(std::move(*answer));
    }
    responder.SetRoute(messaging::OperatorRouteOf(path));
    if (auto answer = messaging::AnswerHealthRequest(request, health_)) return responder.Send(std::move(*answer));
    if (auto answer = messaging::AnswerMetricsRequest(request, metrics_)) return responder.Send(std::move(*answer));
    responder.Send(ErrorResponse(404, "not_found", "no route for " + request.method + " " + request.path));
}

void OrderHttpApi::PostOrder(const HttpRequest& request, const HttpResponder& responder) {
    const std::string* content_type = request.Header("content-type");
    if (!content_type || !IsJsonContentType(*content_type))
        return responder.Send(
            ErrorResponse(415, "unsupported_media_type", "send the order as application/json", "Content-Type"));
    auto parsed = ParseNewOrder(request.body);
    if (auto* error = std::get_if<FieldError>(&parsed))
        return responder.Send(ErrorResponse(400, error->field.empty() ? "malformed_body" : "invalid_field",
                                            error->field.empty() ? error->message : error->field + " " + error->message,
                                            error->field));
    auto order = std::make_shared<const NewOrder>(std::move(std::get<NewOrder>(parsed)));
    // The request's span: a child of the caller's traceparent when it sends a valid one (else the
    // first span of a new trace), with the baggage of its W3C baggage header.
    const std::string* traceparent = request.Header("traceparent");
    const auto caller = traceparent ? messaging::TraceContext::Parse(*traceparent) : std::nullopt;
    messaging::TraceContext span = caller ? caller->NewSpan() : messaging::TraceContext::NewRoot();
    if (const std::string* baggage = request.Header("baggage")) span.baggage = messaging::ParseBaggageHeader(*baggage);
    Submit(std::move(order), span, responder, 0);
}

void OrderHttpApi::Submit(std::shared_ptr<const NewOrder> order, const messaging::TraceContext& span,
                          const HttpResponder& responder, int busy_waits) {
    messaging::LogFields log_fields;
    log_fields.Set(messaging::kTraceLogField, span.trace_id);
    log_fields.Set(contracts::kOrderLogField, order->order_id.str());
    messaging::LogScope log_scope(log_fields);
    try {
        auto not_stored = [this, alive = std::weak_ptr<bool>(alive_)] {
            return alive.expired() ? NotStored(false) : NotStored(DatabaseFailing());
        };
        submission_.Submit(*order, span, [responder, order_id = order->order_id, not_stored](SubmitOutcome result) {
            if (result == SubmitOutcome::kUnavailable) return responder.Send(not_stored());
            if (result == SubmitOutcome::kConflict) {
                HttpResponse conflict =
                    ErrorResponse(409, "conflict",
                                  "an order with id " + order_id.str() +
                                      " was already taken with another customer, amount or items; use a new orderId",
                                  "orderId");
                conflict.headers.emplace_back("Location", "/order/" + order_id.str());
                return responder.Send(std::move(conflict));
            }
            OrderedJson body;
            body["orderId"] = order_id.str();
            HttpResponse response = JsonResponse(202, body);
            response.headers.emplace_back("Location", "/order/" + order_id.str());
            responder.Send(std::move(response));
        });
    } catch (const messaging::StoreBusy& e) {
        // Tried again a little later (10 ms, doubling up to a second) while the request still waits.
        const auto delay = messaging::StoreBusy::RetryDelay(busy_waits);
        if (busy_waits == 0) spdlog::warn("order {}: waiting for the database: {}", order->order_id.str(), e.what());
        loop_.Schedule(
            delay, [this, alive = std::weak_ptr<bool>(alive_), order = std::move(order), span, responder, busy_waits] {
                if (!alive.expired() && responder.Pending()) Submit(order, span, responder, busy_waits + 1);
            });
    } catch (const std::exception& e) {
        spdlog::error("order {}: cannot be stored: {}", order->order_id.str(), e.what());
        // A database that refuses writes (a full disk, an I/O error) is the operator's to mend: 503.
        responder.Send(DatabaseFailing() ? NotStored(true)
                                         : ErrorResponse(500, "internal", "the order could not be stored"));
    }
}

bool OrderHttpApi::DatabaseFailing() const {
    return health_().database_failing();
}

HttpResponse OrderHttpApi::NotStored(bool database_failing) {
    if (database_failing)
        return ErrorResponse(503, "unavailable", "the database cannot store the order now; try again");
    return ErrorResponse(503, "unavailable", "the message broker is not reachable; try again");
}

HttpResponse OrderHttpApi::GetOrder(std::string_view order_id) {
    const auto id = contracts::OrderId::Parse(order_id);
    if (!id)
        return ErrorResponse(400, "invalid_field", "orderId must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
                             "orderId");
    std::optional<OrderRecord> order;
    try {
        order = lookup_.Find(*id);
    } catch (const messaging::StoreBusy& e) {
        spdlog::warn("order {}: cannot be read now: {}", id->str(), e.what());
        return ErrorResponse(503, "unavailable", "the database is busy; try again");
    } catch (const std::exception& e) {
        spdlog::error("order {}: cannot be read: {}", id->str(), e.what());
        return ErrorResponse(500, "internal", "the order could not be read");
    }
    if (!order) return ErrorResponse(404, "not_found", "no order with id " + id->str(), "orderId");
    return JsonResponse(200, OrderToJson(*order));
}

}  // namespace order_service
