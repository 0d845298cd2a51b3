// InMemorySystem: all three services on one event loop over the in-memory transport, with a
// TestHarness observing every bus; for the service and scenario tests. Waiting.h has the rest.
#pragma once

#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "InventoryService/InventoryServiceHost.h"
#include "OrderService/OrderServiceHost.h"
#include "PaymentService/PaymentServiceHost.h"
#include "Support/Waiting.h"
#include "Testing/TestHarness.h"
#include "Transport/InMemoryTransport.h"

namespace test_support {

using namespace std::chrono_literals;

struct SystemOptions {
    std::chrono::milliseconds saga_timeout = 60s;
    messaging::RetryPolicy worker_retry = messaging::RetryPolicy::Interval(3, 20ms);
    messaging::RetryPolicy order_retry = messaging::RetryPolicy::Immediate(5);
    std::vector<payment_service::TransientFailureRule> transient_failures = {};
    bool start_inventory = true;
    bool start_payment = true;
    bool start_http = false;
    bool group_commit = true;                              // Database.GroupCommit of every service
    std::chrono::milliseconds http_request_timeout = 10s;  // Http.RequestTimeoutMs
    bool metrics_enabled = true;                           // Metrics.Enabled of OrderService
};

// Another process's hold on a SQLite database: a connection of its own that has taken the write lock
// (BEGIN IMMEDIATE), kept until Release() or destruction.
class SqliteLock {
  public:
    explicit SqliteLock(const std::string& path);
    ~SqliteLock() { Release(); }
    SqliteLock(const SqliteLock&) = delete;
    SqliteLock& operator=(const SqliteLock&) = delete;
    void Release();

  private:
    sqlite3* db_ = nullptr;
};

// The three services in one process on an in-memory broker, each on its own bus.
class InMemorySystem {
  public:
    explicit InMemorySystem(SystemOptions options = {}, std::shared_ptr<TempDir> dir = nullptr);
    ~InMemorySystem();

    messaging::EventLoop& loop() { return loop_thread_.loop(); }
    messaging::InMemoryTransport& transport() { return *transport_; }
    messaging::TestHarness& harness() { return harness_; }
    order_service::OrderServiceHost& orders() { return *order_; }
    inventory_service::InventoryServiceHost& inventory() { return *inventory_; }
    payment_service::PaymentServiceHost& payment() { return *payment_; }
    std::shared_ptr<TempDir> dir() { return dir_; }
    int http_port() const { return http_port_; }

    // Publishes `message` as an outside publisher would (on the loop thread, waiting for the confirm).
    template <class T>
    messaging::Status Publish(const T& message, messaging::SendOptions options = {}) {
        auto result = std::make_shared<std::promise<messaging::Status>>();
        auto future = result->get_future();
        loop().Post([this, message, options, result] {
            order_->bus().Dispatch({order_->bus().PreparePublish(message, options)},
                                   [result](const messaging::Status& status) { result->set_value(status); });
        });
        return future.get();
    }
    // Publishes raw bytes to an exchange.
    messaging::Status PublishRaw(const std::string& exchange, messaging::TransportMessage message);

    void Submit(const std::string& order_id, const std::string& amount = "149.97");
    std::optional<order_service::OrderRecord> Order(const std::string& order_id);
    std::optional<order_service::OrderSagaInstance> Saga(const std::string& order_id);
    bool WaitForStatus(const std::string& order_id, order_service::OrderStatus status,
                       std::chrono::milliseconds timeout = 10s);
    // The saga view: true once the instance exists in `state` ("Submitted", ...).
    bool SagaExists(const std::string& order_id, order_service::OrderState state,
                    std::chrono::milliseconds timeout = 10s);
    std::size_t QueueDepth(const std::string& queue);
    std::vector<messaging::TransportMessage> QueueMessages(const std::string& queue);
    // Waits until no message is ready or unacked on the three endpoint queues.
    bool WaitIdle(std::chrono::milliseconds timeout = 10s);

  private:
    std::shared_ptr<TempDir> dir_;
    messaging::EventLoopThread loop_thread_;
    std::unique_ptr<messaging::InMemoryTransport> transport_;
    messaging::TestHarness harness_;
    std::unique_ptr<order_service::OrderServiceHost> order_;
    std::unique_ptr<inventory_service::InventoryServiceHost> inventory_;
    std::unique_ptr<payment_service::PaymentServiceHost> payment_;
    int http_port_ = 0;
};

}  // namespace test_support
