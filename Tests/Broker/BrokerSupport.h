// Support for the tests that run against the private RabbitMQ node scripts/test.sh starts: where it
// is (SAGA_TEST_* variables; a missing broker fails the tests, it never skips them), a management
// API client, a private vhost per test, a plain blocking AMQP client standing in for a .NET peer, the
// three services wired in-process on RabbitMqTransport, and service executables as child processes.
#pragma once

#include <httplib.h>
#include <sys/types.h>

#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "RabbitMq/RabbitMqTransport.h"
#include "Support/TestSupport.h"

namespace broker_test {

struct BrokerEnvironment {
    int amqp_port = 0;
    int management_port = 0;
    std::string broker_dir;
    static const BrokerEnvironment& Get();  // throws with instructions when the broker is not set up
};

class ManagementApi {
  public:
    ManagementApi();
    contracts::Json Get(const std::string& path);
    void Put(const std::string& path, const contracts::Json& body);
    int Delete(const std::string& path);  // the HTTP status, 0 when there was no answer

  private:
    httplib::Client client_;
};

std::string Encode(const std::string& text);  // percent-encoding for management API paths
// A port nobody listens on now: bound to 0, read back, released.
int FreePort();
// POST /order of a 10.00 order with this id: the status, 0 without an answer.
int PostOrder(httplib::Client& client, const std::string& id);
// GET /order/{id}'s status, or "<code>" for another answer ("<0>": none).
std::string OrderStatus(httplib::Client& client, const std::string& id);

// A vhost of its own for one test; deleted at the end.
class ScopedVhost {
  public:
    ScopedVhost();
    ~ScopedVhost();
    const std::string& name() const { return name_; }
    messaging::RabbitMqSettings Settings() const;
    std::vector<std::string> SettingsEnvironment() const;  // RabbitMQ__* and Admin__* for a child process

  private:
    std::string name_;
};

struct RawMessage {
    std::string body;
    messaging::MessageProperties properties;
    std::string exchange;
    std::string routing_key;
};

// A blocking AMQP client on its own connection, as a .NET peer or an operator's tool would be.
class RawAmqpClient {
  public:
    explicit RawAmqpClient(const std::string& vhost);
    ~RawAmqpClient();
    // Declares a durable queue bound to each of the exchanges (declaring them as MassTransit does).
    void Tap(const std::string& queue, const std::vector<std::string>& exchanges);
    void Publish(const std::string& exchange, const std::string& body, const messaging::MessageProperties& properties);
    // One message, or none once the timeout passes: basic.get, then a consumer. A queue that does not serve
    // (the broker closes the channel, or the connection with INTERNAL_ERROR) is asked again on a new one.
    std::optional<RawMessage> Get(const std::string& queue,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10));
    std::vector<RawMessage> Drain(const std::string& queue);  // everything ready now

  private:
    std::string vhost_;
    void* state_;
};

// The three services on RabbitMqTransport, in this process, on one loop thread.
class BrokerSystem {
  public:
    struct Options {
        bool start_orders = true;
        bool start_inventory = true;
        bool start_payment = true;
        bool start_http = false;
        messaging::RetryPolicy worker_retry = messaging::RetryPolicy::Interval(3, std::chrono::milliseconds(50));
        int order_service_amqp_port = 0;              // non-zero: OrderService connects there (an AmqpProxy)
        messaging::HeaderTable queue_arguments = {};  // every endpoint's, e.g. SetQuorumQueue's
        bool wait_until_settled = true;               // false: return while the transports may still be connecting
        int queue_check_interval_ms = 0;              // non-zero: every transport's RabbitMqSettings value
        // Non-empty: the RabbitMQ.Hosts of each service, by name ("OrderService", ...), as a cluster's nodes.
        std::map<std::string, std::vector<std::string>> hosts = {};
    };
    BrokerSystem(const ScopedVhost& vhost, Options options);
    ~BrokerSystem();

    messaging::EventLoop& loop() { return loop_thread_.loop(); }
    messaging::TestHarness& harness() { return harness_; }
    order_service::OrderServiceHost& orders() { return *order_; }
    inventory_service::InventoryServiceHost& inventory() { return *inventory_; }
    payment_service::PaymentServiceHost& payment() { return *payment_; }
    int http_port() const { return http_port_; }
    std::optional<order_service::OrderRecord> Order(const std::string& id);
    bool WaitForStatus(const std::string& id, order_service::OrderStatus status,
                       std::chrono::milliseconds timeout = std::chrono::seconds(20));
    bool Connected();
    // The transports in start order (OrderService first when it runs).
    messaging::RabbitMqTransport& transport(std::size_t index) { return *transports_.at(index); }

  private:
    test_support::TempDir dir_;
    messaging::EventLoopThread loop_thread_;
    messaging::TestHarness harness_;
    std::vector<std::unique_ptr<messaging::RabbitMqTransport>> transports_;
    std::unique_ptr<order_service::OrderServiceHost> order_;
    std::unique_ptr<inventory_service::InventoryServiceHost> inventory_;
    std::unique_ptr<payment_service::PaymentServiceHost> payment_;
    int http_port_ = 0;
};

// A service executable run as a child process; killed (SIGKILL) if still running at destruction.
class ChildProcess {
  public:
    ChildProcess(const std::string& program, const std::vector<std::string>& arguments,
                 const std::vector<std::string>& extra_environment, const std::string& log_path);
    ~ChildProcess();
    void Signal(int signal_number);
    // The exit code, or nullopt if it did not exit within `timeout` (-signal for a signal death).
    std::optional<int> Wait(std::chrono::milliseconds timeout);
    pid_t pid() const { return pid_; }

  private:
    pid_t pid_ = -1;
    std::shared_future<int> exited_;  // set by waiter_, which blocks in waitpid
    std::thread waiter_;
};

// Waits until the vhost has the queue: MassTransit, and so our bus, declares `_error` and `_skipped` on
// first use, and a basic.get on a queue that does not exist yet closes the channel.
bool WaitForQueue(const ScopedVhost& vhost, const std::string& queue,
                  std::chrono::milliseconds timeout = std::chrono::seconds(20));

// A header of a delivery as text, "<missing>" when it has none.
std::string Header(const messaging::MessageProperties& properties, const std::string& name);
// Submits an order straight to the OrderService of `system` (no HTTP), and requires it accepted.
void SubmitOrder(BrokerSystem& system, const std::string& id, const std::string& amount = "149.97");
// Whether no queue of the vhost holds an unacknowledged message.
bool QueuesSettled(ManagementApi& api, const ScopedVhost& vhost);
// The longest of `count` GET /health answers, and the body of the last one.
std::pair<std::chrono::milliseconds, contracts::Json> SlowestHealth(httplib::Client& client, int count);

std::string SourceDir();
void RestartBrokerApp(int seconds_down = 1);
// Raises (or clears) a memory alarm on the test node: the broker blocks every publishing connection.
void SetMemoryAlarm(bool raised);
// Stops (or starts again) the Ra server that holds a quorum queue on the test node, as a crash leaves
// it: until it runs again, publishes to the queue wait unconfirmed and a basic.get closes the connection.
void SetQuorumMemberRunning(const ScopedVhost& vhost, const std::string& queue, bool running);

// A TCP relay between one client and the test broker that can hold the broker's bytes in the middle
// of a delivery: after the next basic.deliver method frame it passes three bytes of the content
// header frame, then nothing until Release(). The relay runs on a thread of its own.
class AmqpProxy {
  public:
    AmqpProxy();
    ~AmqpProxy();
    int port() const { return port_; }
    void HoldInsideNextDelivery();
    bool holding() const { return holding_; }
    void Release();

  private:
    void Run();

    int listener_ = -1;
    int port_ = 0;
    int wake_[2] = {-1, -1};
    std::atomic<bool> stop_{false};
    std::atomic<bool> armed_{false};
    std::atomic<bool> holding_{false};
    std::atomic<bool> release_{false};
    std::thread thread_;
};

}  // namespace broker_test
