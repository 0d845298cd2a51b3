// A deployment of the three services on one vhost of the private broker, each service either ours
// (the C++ executable) or its MassTransit twin (Tests/MassTransitTwin/Twin), each in a process of its
// own, started in a chosen order: what the mixed-deployment and differential tests run.
#pragma once

#include <httplib.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "Broker/BrokerSupport.h"

namespace twin_test {

enum class Side { kOurs, kTwin };
enum class Service { kOrder, kInventory, kPayment };  // the order of Deployment.cpp's table of facts

// Which implementation runs each service.
struct Mix {
    Side order = Side::kOurs;
    Side inventory = Side::kOurs;
    Side payment = Side::kOurs;
    Side Of(Service service) const;
    std::string Name() const;  // e.g. "twin OrderService + our InventoryService + our PaymentService"
};

// Which side's processes start first (and so declare the shared topology first).
enum class StartFirst { kOurs, kTwin };

class Deployment {
  public:
    // `environment` is added to every process's, e.g. Endpoint__QueueType=Quorum for both sides.
    Deployment(const broker_test::ScopedVhost& vhost, Mix mix, StartFirst first,
               std::vector<std::string> environment = {});
    ~Deployment();  // SIGTERM to every process, SIGKILL to any still running after 10 s

    // POST /order with the given id and any extra request headers (traceparent); returns the HTTP status.
    int Submit(const std::string& order_id, const httplib::Headers& headers = {});
    std::optional<contracts::Json> Order(const std::string& order_id);
    // Polls GET /order/{id} until the order is Completed or Failed; returns its last body.
    contracts::Json WaitForFinal(const std::string& order_id);
    // Every process's output so far, each under a heading with its name.
    std::string Logs() const;
    // GET /metrics of the service's process: the twin's from OpenTelemetry's Prometheus exporter
    // (Metrics__Port), ours from OrderService's API port or a worker's admin port. Empty when it does
    // not answer.
    std::string Metrics(Service service) const;
    // Lines of the processes' output that show a refused declaration or a lost connection.
    std::vector<std::string> TopologyTroubles() const;
    const Mix& mix() const { return mix_; }

  private:
    void Start(Service service);
    void WaitReady(Service service);

    const broker_test::ScopedVhost& vhost_;
    Mix mix_;
    std::vector<std::string> environment_;
    test_support::TempDir dir_;
    int http_port_ = 0;
    struct Process {
        Service service;
        int metrics_port = 0;
        std::string name;
        std::string log_path;
        std::unique_ptr<broker_test::ChildProcess> child;
    };
    std::vector<Process> processes_;
    std::unique_ptr<httplib::Client> client_;
};

const char* QueueOf(Service service);
std::string TwinBinary();  // the built twin; throws with instructions when it is missing

}  // namespace twin_test
