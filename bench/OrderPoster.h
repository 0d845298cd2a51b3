// The load generator's HTTP side: POSTs a step's orders open-loop over keep-alive connections from one
// thread on a libuv loop of its own. Each order goes out at its scheduled time on the first idle
// connection (or, if none is idle, as soon as one is); a thread per connection would compete with the
// system under test for the same cores. The timer counts whole milliseconds, so an order goes out up
// to about a millisecond late; each order's send time is kept, and the report gives that lag.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace bench {

struct PostedOrder {
    std::string id;                                // its orderId
    std::string body;                              // the JSON of POST /order
    std::chrono::steady_clock::time_point due;     // when it is to be sent (ascending across orders)
    std::chrono::steady_clock::time_point sent{};  // when its request was handed to the socket
    int status = 0;                                // the HTTP status, -1 if the connection failed
    std::chrono::steady_clock::time_point answered{};
};

// Sends every order in `orders` and returns once each has its answer; an order whose connection
// failed (or could not be opened) gets status -1.
void PostOrders(const std::string& host, int port, int connections, std::vector<PostedOrder>& orders);

}  // namespace bench
