// OrderService: wiring only. `--in-memory` runs all three services in this process on the
// in-memory bus (no broker needed); otherwise it connects to RabbitMQ. See OrderService/README.md.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "Hosting/ServiceRunner.h"
#include "InventoryService/InventoryServiceHost.h"
#include "OrderService/OrderServiceHost.h"
#include "PaymentService/PaymentServiceHost.h"
#include "RabbitMq/RabbitMqTransport.h"
#include "Transport/InMemoryTransport.h"

int main(int argc, char** argv) {
    using namespace messaging;
    try {
        const CommandLine line = ParseCommandLine(argc, argv, "OrderService");
        if (!line.unknown.empty()) throw SettingsError("usage: OrderService [--config PATH] [--in-memory]");
        const auto environment = ProcessEnvironment();
        auto settings = order_service::OrderSettings::Load(line.config_path, environment);
        ConfigureLogging(line.in_memory ? "OrderService(in-memory)" : "OrderService", settings.log_level);
        const auto config_dir = std::filesystem::path(line.config_path).parent_path();

        EventLoop loop;
        std::unique_ptr<Transport> transport;
        RabbitMqTransport* rabbitmq = nullptr;
        std::unique_ptr<order_service::OrderServiceHost> orders;
        std::unique_ptr<inventory_service::InventoryServiceHost> inventory;
        std::unique_ptr<payment_service::PaymentServiceHost> payment;
        const int code = RunUntilSignalled(loop, [&] {
            if (line.in_memory) {
                transport = std::make_unique<InMemoryTransport>(loop);
                auto inventory_settings = inventory_service::InventorySettings::Load(
                    (config_dir / "InventoryService.json").string(), environment);
                auto payment_settings =
                    payment_service::PaymentSettings::Load((config_dir / "PaymentService.json").string(), environment);
                inventory =
                    std::make_unique<inventory_service::InventoryServiceHost>(loop, *transport, inventory_settings);
                payment = std::make_unique<payment_service::PaymentServiceHost>(loop, *transport, payment_settings);
                if (auto status = inventory->Start(); !status.ok()) throw std::runtime_error(status.message());
                if (auto status = payment->Start(); !status.ok()) throw std::runtime_error(status.message());
            } else {
                auto connection = std::make_unique<RabbitMqTransport>(loop, settings.rabbitmq, "OrderService");
                connection->Start();
                rabbitmq = connection.get();
                transport = std::move(connection);
            }
            orders = std::make_unique<order_service::OrderServiceHost>(loop, *transport, settings);
            if (auto status = orders->Start(); !status.ok()) throw std::runtime_error(status.message());
            orders->StartHttp();
            return RunningService{[&](std::function<void()> done) {
                orders->Stop([&, done] {
                    auto finish = [&, done] {
                        if (rabbitmq)
                            rabbitmq->Close(done);
                        else
                            done();
                    };
                    if (!inventory) return finish();
                    inventory->Stop([&, finish] { payment->Stop(finish); });
                });
            }};
        });
        orders.reset();
        payment.reset();
        inventory.reset();
        transport.reset();
        return code;
    } catch (const std::exception& e) {
        spdlog::critical("OrderService: {}", e.what());
        return 2;
    }
}
