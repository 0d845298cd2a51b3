#include "OrderService/OrderHttpApi.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <future>

namespace order_service {
namespace {

using contracts::Json;
using contracts::OrderedJson;

void SendError(httplib::Response& response, int status, const std::string& error, const std::string& message,
               const std::string& field = {}) {
    OrderedJson body;
    body["error"] = error;
    body["message"] = message;
    if (!field.empty()) body["field"] = field;
    response.status = status;
    response.set_content(body.dump(), "application/json");
}

bool IsJsonContentType(const std::string& value) {
    std::string type = value.substr(0, value.find(';'));
    while (!type.empty() && type.back() == ' ') type.pop_back();
    for (auto& c : type) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return type == "application/json" || (type.size() > 5 && type.compare(type.size() - 5, 5, "+json") == 0);
}

std::optional<contracts::Decimal> ReadMoney(const Json& value) {
    return contracts::DecimalFromJson(value);
}

}  // namespace

std::variant<NewOrder, FieldError> ParseNewOrder(std::string_view text) {
    const Json body = Json::parse(text, nullptr, false);
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
        if (!id->is_string() || !contracts::IsValidOrderId(id->get<std::string>()))
            return FieldError{"orderId", "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"};
        order.order_id = id->get<std::string>();
    } else {
        order.order_id = contracts::Guid::New().ToString();
    }

    const Json* customer = contracts::FindField(body, "customerNumber");
    if (!customer) return FieldError{"customerNumber", "is required"};
    if (!customer->is_string() || customer->get_ref<const std::string&>().empty() ||
        customer->get_ref<const std::string&>().size() > 256)
        return FieldError{"customerNumber", "must be a string of 1-256 characters"};
    order.customer_number = customer->get<std::string>();

    const Json* total = contracts::FindField(body, "totalAmount");
    if (!total) return FieldError{"totalAmount", "is required"};
    auto amount = ReadMoney(*total);
    if (!amount || !amount->IsPositive() || amount->SignificantScale() > 2)
        return FieldError{"totalAmount",
                          "must be a positive amount with at most 2 decimals, e.g. 149.97 or \"149.97\""};
    order.total_amount = *amount;

    if (const Json* items = contracts::FindField(body, "items")) {
        if (!items->is_array()) return FieldError{"items", "must be an array"};
        if (items->size() > 1000) return FieldError{"items", "must hold at most 1000 items"};
        for (std::size_t i = 0; i < items->size(); ++i) {
            const Json& item = (*items)[i];
            const std::string where = "items[" + std::to_string(i) + "]";
            if (!item.is_object()) return FieldError{where, "must be an object"};
            const Json* sku = contracts::FindField(item, "sku");
            if (!sku || !sku->is_string() || sku->get_ref<const std::string&>().empty() ||
                sku->get_ref<const std::string&>().size() > 64)
                return FieldError{where + ".sku", "must be a string of 1-64 characters"};
            const Json* quantity = contracts::FindField(item, "quantity");
            if (!quantity || !quantity->is_number_integer() || quantity->get<std::int64_t>() < 1 ||
                quantity->get<std::int64_t>() > 1000000)
                return FieldError{where + ".quantity", "must be an integer from 1 to 1000000"};
            const Json* price = contracts::FindField(item, "unitPrice");
            auto unit_price = price ? ReadMoney(*price) : std::nullopt;
            if (!unit_price || *unit_price < contracts::Decimal() || unit_price->SignificantScale() > 2)
                return FieldError{where + ".unitPrice", "must be a non-negative amount with at most 2 decimals"};
            order.items.push_back({sku->get<std::string>(), quantity->get<std::int64_t>(), *unit_price});
        }
    }
    return order;
}

OrderedJson OrderToJson(const OrderRecord& order) {
    OrderedJson json;
    json["orderId"] = order.order_id;
    json["status"] = order.status;
    json["reason"] = order.reason.empty() ? OrderedJson() : OrderedJson(order.reason);
    json["customerNumber"] = order.customer_number;
    json["totalAmount"] = order.total_amount.ToString();
    json["items"] = contracts::WriteOrderItems(order.items);
    json["transactionId"] = order.transaction_id.empty() ? OrderedJson() : OrderedJson(order.transaction_id);
    json["createdAt"] = contracts::FormatIso8601(order.created_at);
    json["updatedAt"] = contracts::FormatIso8601(order.updated_at);
    return json;
}

OrderHttpApi::OrderHttpApi(messaging::EventLoop& loop, OrderSubmission& submission, HttpSettings settings)
    : loop_(loop),
      submission_(submission),
      settings_(std::move(settings)),
      server_(std::make_unique<httplib::Server>()) {
    Routes();
}

OrderHttpApi::~OrderHttpApi() {
    StopAccepting();
    if (thread_.joinable()) thread_.join();
}

void OrderHttpApi::Routes() {
    auto& server = *server_;
    const int threads = settings_.threads;
    server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
    server.set_payload_max_length(static_cast<std::size_t>(settings_.max_body_bytes));
    server.set_keep_alive_max_count(1000);
    // Without it a response written in two pieces waits for the client's delayed ACK (~40 ms).
    server.set_tcp_nodelay(true);
    // cpp-httplib also sets SO_REUSEPORT by default, which lets a second OrderService bind the same
    // port and silently take half the connections; a port in use must be an error at start.
    server.set_socket_options([](socket_t sock) {
        int yes = 1;
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    });

    server.Post("/order", [this](const httplib::Request& request, httplib::Response& response) {
        if (!IsJsonContentType(request.get_header_value("Content-Type")))
            return SendError(response, 415, "unsupported_media_type", "send the order as application/json",
                             "Content-Type");
        auto parsed = ParseNewOrder(request.body);
        if (auto* error = std::get_if<FieldError>(&parsed))
            return SendError(response, 400, error->field.empty() ? "malformed_body" : "invalid_field",
                             error->field.empty() ? error->message : error->field + " " + error->message, error->field);
        const NewOrder order = std::get<NewOrder>(std::move(parsed));

        auto outcome = std::make_shared<std::promise<SubmitOutcome>>();
        auto future = outcome->get_future();
        loop_.Post([this, order, outcome] {
            try {
                submission_.Submit(order, [outcome](SubmitOutcome result) { outcome->set_value(result); });
            } catch (const std::exception& e) {
                spdlog::error("order {}: cannot be stored: {}", order.order_id, e.what());
                outcome->set_exception(std::current_exception());
            }
        });
        SubmitOutcome result = SubmitOutcome::kUnavailable;
        try {
            if (future.wait_for(std::chrono::milliseconds(settings_.request_timeout_ms)) != std::future_status::ready)
                return SendError(response, 503, "unavailable", "the message bus did not answer in time; try again");
            result = future.get();
        } catch (const std::exception& e) {
            return SendError(response, 500, "internal", "the order could not be stored");
        }
        if (result == SubmitOutcome::kUnavailable)
            return SendError(response, 503, "unavailable", "the message broker is not reachable; try again");
        OrderedJson body;
        body["orderId"] = order.order_id;
        response.status = 202;
        response.set_header("Location", "/order/" + order.order_id);
        response.set_content(body.dump(), "application/json");
    });

    server.Get(R"(/order/([^/]+))", [this](const httplib::Request& request, httplib::Response& response) {
        const std::string order_id = request.matches[1];
        if (!contracts::IsValidOrderId(order_id))
            return SendError(response, 400, "invalid_field",
                             "orderId must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", "orderId");
        std::optional<std::optional<OrderRecord>> found;
        try {
            found = loop_.InvokeFor([this, order_id] { return submission_.Find(order_id); },
                                    std::chrono::milliseconds(settings_.request_timeout_ms));
        } catch (const std::exception&) {
            return SendError(response, 500, "internal", "the order could not be read");
        }
        if (!found) return SendError(response, 503, "unavailable", "the service did not answer in time; try again");
        const std::optional<OrderRecord>& order = *found;
        if (!order) return SendError(response, 404, "not_found", "no order with id " + order_id, "orderId");
        response.set_content(OrderToJson(*order).dump(), "application/json");
    });

    server.Get("/health", [this](const httplib::Request&, httplib::Response& response) {
        const bool connected =
            loop_.InvokeFor([this] { return submission_.BusConnected(); }, std::chrono::seconds(5)).value_or(false);
        OrderedJson body;
        body["status"] = connected ? "ok" : "degraded";
        body["broker"] = connected ? "connected" : "disconnected";
        response.status = connected ? 200 : 503;
        response.set_content(body.dump(), "application/json");
    });

    server.set_exception_handler([](const httplib::Request&, httplib::Response& response, std::exception_ptr) {
        SendError(response, 500, "internal", "unexpected error");
    });
    server.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
        if (!response.body.empty()) return;
        switch (response.status) {
            case 404:
                return SendError(response, 404, "not_found", "no route for " + request.method + " " + request.path);
            case 413:
                return SendError(response, 413, "payload_too_large", "the body is larger than the limit");
            case 400:
                return SendError(response, 400, "bad_request", "the request could not be read");
            default:
                return SendError(response, response.status, "error", "the request failed");
        }
    });
}

void OrderHttpApi::Start() {
    if (settings_.port == 0) {
        port_ = server_->bind_to_any_port(settings_.host);
    } else {
        port_ = server_->bind_to_port(settings_.host, settings_.port) ? settings_.port : -1;
    }
    if (port_ <= 0)
        throw std::runtime_error("cannot listen on " + settings_.host + ":" + std::to_string(settings_.port));
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    spdlog::info("HTTP API listening on http://{}:{} (POST /order, GET /order/{{orderId}})", settings_.host, port_);
}

void OrderHttpApi::StopAccepting() {
    if (server_) server_->stop();
}

}  // namespace order_service
