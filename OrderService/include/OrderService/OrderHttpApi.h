// The HTTP API (cpp-httplib): POST /order, GET /order/{orderId} and GET /health. Requests are validated on the
// HTTP threads (ParseNewOrder is pure) and handed to the loop thread, which owns the bus and the
// database. Every error answer is a JSON object {"error", "message", "field"?}.
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <variant>

#include "Messaging/EventLoop.h"
#include "OrderService/OrderSettings.h"
#include "OrderService/OrderSubmission.h"

namespace httplib {
class Server;
}

namespace order_service {

struct FieldError {
    std::string field;  // empty when the body as a whole is wrong
    std::string message;
};

// Validates a POST /order body; a missing orderId gets a new lowercase GUID.
std::variant<NewOrder, FieldError> ParseNewOrder(std::string_view body);
contracts::OrderedJson OrderToJson(const OrderRecord& order);

class OrderHttpApi {
  public:
    OrderHttpApi(messaging::EventLoop& loop, OrderSubmission& submission, HttpSettings settings);
    ~OrderHttpApi();

    // Binds and starts serving on a thread of its own; throws if the port cannot be bound.
    void Start();
    // Stops accepting connections; safe from any thread, including the loop thread.
    void StopAccepting();
    int port() const { return port_; }

  private:
    void Routes();

    messaging::EventLoop& loop_;
    OrderSubmission& submission_;
    HttpSettings settings_;
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace order_service
