// The HTTP API: POST /order, GET /order/{orderId}, the health answers (/health, /health/live,
// /health/ready) and the service's metrics (/metrics), served by the loop's HttpServer on the loop thread, which owns
// the bus and the database. POST answers once the order and its OrderSubmitted are stored. Every error answer is a JSON
// object
// {"error", "message", "field"?}.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "Hosting/MetricsEndpoint.h"
#include "Hosting/ServiceHealth.h"
#include "Http/HttpServer.h"
#include "OrderService/OrderSettings.h"
#include "OrderService/OrderSubmission.h"
#include "OrderService/SwaggerUi.h"
#include "Runtime/EventLoop.h"

namespace order_service {

struct FieldError {
    std::string field;  // empty when the body as a whole is wrong
    std::string message;
};

// Validates a POST /order body; a missing orderId gets a new lowercase GUID.
std::variant<NewOrder, FieldError> ParseNewOrder(std::string_view body);
contracts::OrderedJson OrderToJson(const OrderRecord& order);

// GET /order/{orderId} reads committed state only: a batch still waiting for its group commit is
// committed first, so an order answered 202 is always found.
class OrderLookup {
  public:
    OrderLookup(OrderRepository& repository, messaging::UnitOfWork& unit_of_work)
        : repository_(repository), unit_of_work_(unit_of_work) {}
    std::optional<OrderRecord> Find(const contracts::OrderId& order_id) {
        unit_of_work_.Flush();
        return repository_.FindOrder(order_id);
    }

  private:
    OrderRepository& repository_;
    messaging::UnitOfWork& unit_of_work_;
};

class OrderHttpApi {
  public:
    OrderHttpApi(messaging::EventLoop& loop, OrderSubmission& submission, OrderLookup& lookup,
                 messaging::HealthProbe health, metrics::MetricsRegistry* metrics, HttpSettings settings);
    ~OrderHttpApi();

    // Binds and starts serving on the loop (from any thread); throws if the port cannot be bound.
    void Start();
    // Stops accepting connections; safe from any thread, including the loop thread.
    void StopAccepting();
    int port() const { return port_; }

  private:
    void Route(const messaging::HttpRequest& request, const messaging::HttpResponder& responder);
    void PostOrder(const messaging::HttpRequest& request, const messaging::HttpResponder& responder);
    // Stores the order and answers. While the database is locked by another writer it tries again on a
    // timer (never waiting on the loop) for as long as the request waits; past the request's deadline
    // the server has answered 503, and nothing was stored.
    void Submit(std::shared_ptr<const NewOrder> order, const messaging::TraceContext& span,
                const messaging::HttpResponder& responder, int busy_waits);
    messaging::HttpResponse GetOrder(std::string_view order_id);
    // Whether /health finds the database failing (it refuses writes: a full disk, an I/O error).
    bool DatabaseFailing() const;
    // The 503 of an order that was not stored, naming what is away: the database, or the broker.
    static messaging::HttpResponse NotStored(bool database_failing);

    messaging::EventLoop& loop_;
    OrderSubmission& submission_;
    OrderLookup& lookup_;
    messaging::HealthProbe health_;  // what /health reports
    // What /metrics serves and where requests are recorded; none when metrics are off.
    metrics::MetricsRegistry* metrics_;
    HttpSettings settings_;
    SwaggerUi swagger_ui_;  // /swagger
    std::unique_ptr<messaging::HttpServer> server_;
    int port_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for the busy database's retries
};

}  // namespace order_service
