#include "MassTransitTwin/Deployment.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <doctest/doctest.h>

namespace twin_test {
namespace {

using contracts::Json;
using namespace std::chrono_literals;

// What each service is called where: its executable's name, the twin's argument, its queue, our binary.
struct ServiceFacts {
    const char* name;
    const char* twin_argument;
    const char* queue;
    const char* our_binary;
};

const ServiceFacts& Facts(Service service) {
    static const ServiceFacts kFacts[] = {
        {"OrderService", "order", "order-service", ORDER_SERVICE_BIN},
        {"InventoryService", "inventory", "inventory-service", INVENTORY_SERVICE_BIN},
        {"PaymentService", "payment", "payment-service", PAYMENT_SERVICE_BIN},
    };
    return kFacts[static_cast<int>(service)];
}

const char* ServiceName(Service service) {
    return Facts(service).name;
}

std::string ReadFile(const std::string& path) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

}  // namespace

Side Mix::Of(Service service) const {
    switch (service) {
        case Service::kOrder:
            return order;
        case Service::kInventory:
            return inventory;
        case Service::kPayment:
            return payment;
    }
    return Side::kOurs;
}

std::string Mix::Name() const {
    std::string name;
    for (Service service : {Service::kOrder, Service::kInventory, Service::kPayment}) {
        if (!name.empty()) name += " + ";
        name += (Of(service) == Side::kTwin ? "twin " : "our ") + std::string(ServiceName(service));
    }
    return name;
}

const char* QueueOf(Service service) {
    return Facts(service).queue;
}

std::string TwinBinary() {
    const std::string path = TWIN_BIN;
    if (!std::filesystem::exists(path))
        throw std::runtime_error("the MassTransit twin is not built at " + path +
                                 " (it is built by the MassTransitTwin target when dotnet is on the PATH)");
    return path;
}

Deployment::Deployment(const broker_test::ScopedVhost& vhost, Mix mix, StartFirst first,
                       std::vector<std::string> environment)
    : vhost_(vhost), mix_(mix), environment_(std::move(environment)), http_port_(broker_test::FreePort()) {
    const Side first_side = first == StartFirst::kTwin ? Side::kTwin : Side::kOurs;
    std::vector<Service> order;
    for (Side side : {first_side, first_side == Side::kTwin ? Side::kOurs : Side::kTwin})
        for (Service service : {Service::kInventory, Service::kPayment, Service::kOrder})
            if (mix_.Of(service) == side) order.push_back(service);
    // Each side's processes finish declaring before the other side starts: the second side always
    // meets a topology the first one made.
    for (Service service : order) {
        Start(service);
        WaitReady(service);
    }
    client_ = std::make_unique<httplib::Client>("127.0.0.1", http_port_);
    client_->set_read_timeout(30, 0);
}

Deployment::~Deployment() {
    for (auto& process : processes_) process.child->Signal(SIGTERM);
    for (auto& process : processes_) process.child->Wait(10s);
}

void Deployment::Start(Service service) {
    Process process;
    process.service = service;
    process.name = (mix_.Of(service) == Side::kTwin ? "twin " : "our ") + std::string(ServiceName(service));
    process.log_path = dir_.File(std::string(ServiceName(service)) + ".log");
    std::vector<std::string> environment = vhost_.SettingsEnvironment();
    environment.push_back("Http__Port=" + std::to_string(http_port_));
    environment.push_back("Http__Host=127.0.0.1");
    environment.insert(environment.end(), environment_.begin(), environment_.end());
    // Where its metrics are scraped: OrderService's API port, else a port of its own.
    process.metrics_port =
        mix_.Of(service) == Side::kOurs && service == Service::kOrder ? http_port_ : broker_test::FreePort();
    std::erase_if(environment, [](const std::string& entry) { return entry.rfind("Admin__Port=", 0) == 0; });
    environment.push_back((mix_.Of(service) == Side::kTwin ? "Metrics__Port=" : "Admin__Port=") +
                          std::to_string(process.metrics_port));
    if (mix_.Of(service) == Side::kTwin) {
        environment.push_back("Logging__Level=Warning");
        process.child = std::make_unique<broker_test::ChildProcess>(
            TwinBinary(), std::vector<std::string>{Facts(service).twin_argument}, environment, process.log_path);
    } else {
        environment.push_back("Logging__Level=info");
        environment.push_back("Database__Path=" + dir_.File(std::string(ServiceName(service)) + ".db"));
        const std::string config = broker_test::SourceDir() + "/appsettings/" + ServiceName(service) + ".json";
        process.child = std::make_unique<broker_test::ChildProcess>(
            Facts(service).our_binary, std::vector<std::string>{"--config", config}, environment, process.log_path);
    }
    processes_.push_back(std::move(process));
}

void Deployment::WaitReady(Service service) {
    broker_test::ManagementApi api;
    // The vhost's consumer list, not the queue's consumer count: the broker reports a quorum queue's
    // count only with its periodic metrics, about 9 s after the consumer came (a classic queue's, 5 s).
    const std::string path = "consumers/" + broker_test::Encode(vhost_.name());
    const bool consuming = test_support::WaitFor(
        [&] {
            if (processes_.back().child->Wait(0ms)) return false;
            try {
                for (const auto& consumer : api.Get(path))
                    if (consumer["queue"]["name"] == QueueOf(service)) return true;
                return false;
            } catch (const std::exception&) {
                return false;
            }
        },
        60s);
    REQUIRE_MESSAGE(consuming, processes_.back().name << " did not start consuming " << QueueOf(service) << "\n"
                                                      << Logs());
    if (service != Service::kOrder) return;
    httplib::Client health("127.0.0.1", http_port_);
    const bool answering = test_support::WaitFor(
        [&] {
            auto result = health.Get("/health");
            return result && result->status == 200;
        },
        30s);
    REQUIRE_MESSAGE(answering, processes_.back().name << " does not answer GET /health\n" << Logs());
}

std::string Deployment::Metrics(Service service) const {
    for (const auto& process : processes_) {
        if (process.service != service) continue;
        httplib::Client client("127.0.0.1", process.metrics_port);
        client.set_read_timeout(10, 0);
        auto result = client.Get("/metrics");
        return result && result->status == 200 ? result->body : std::string();
    }
    return {};
}

int Deployment::Submit(const std::string& order_id, const httplib::Headers& headers) {
    const std::string body = R"({"orderId":")" + order_id +
                             R"(","customerNumber":"CUST-7","totalAmount":"149.97",)"
                             R"("items":[{"sku":"SKU-1","quantity":3,"unitPrice":"49.99"}]})";
    auto result = client_->Post("/order", headers, body, "application/json");
    return result ? result->status : 0;
}

std::optional<Json> Deployment::Order(const std::string& order_id) {
    auto result = client_->Get(("/order/" + order_id).c_str());
    if (!result || result->status != 200) return std::nullopt;
    return Json::parse(result->body);
}

Json Deployment::WaitForFinal(const std::string& order_id) {
    Json order;
    test_support::WaitFor(
        [&] {
            auto found = Order(order_id);
            if (!found) return false;
            order = *found;
            return order["status"] == "Completed" || order["status"] == "Failed";
        },
        30s);
    return order;
}

std::string Deployment::Logs() const {
    std::string text;
    for (const auto& process : processes_) text += "---- " + process.name + "\n" + ReadFile(process.log_path);
    return text;
}

std::vector<std::string> Deployment::TopologyTroubles() const {
    static const char* kMarkers[] = {"PRECONDITION_FAILED", "inequivalent arg",  "connection lost",
                                     "reconnecting",        "Connection Failed", "RabbitMqConnectionException"};
    std::vector<std::string> lines;
    for (const auto& process : processes_) {
        std::istringstream log(ReadFile(process.log_path));
        for (std::string line; std::getline(log, line);)
            for (const char* marker : kMarkers)
                if (line.find(marker) != std::string::npos) {
                    lines.push_back(process.name + ": " + line);
                    break;
                }
    }
    return lines;
}

}  // namespace twin_test
