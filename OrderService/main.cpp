// OrderService: wiring only. `--in-memory` runs all three services in this process on the
// in-memory bus (no broker needed; see Embedded/); otherwise it connects to RabbitMQ.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "Embedded/EmbeddedSystem.h"
#include "Hosting/ServiceRunner.h"
#include "Metrics/ProcessMetrics.h"
#include "OrderService/OrderServiceHost.h"
#include "RabbitMq/RabbitMqTransport.h"

int main(int argc, char** argv) {
    using namespace messaging;
    using metrics::AddProcessMetrics;
    try {
        const CommandLine line = ParseCommandLine(argc, argv, "OrderService");
        if (!line.unknown.empty()) throw SettingsError("usage: OrderService [--config PATH] [--in-memory]");
        const auto environment = ProcessEnvironment();
        auto settings = order_service::OrderSettings::Load(line.config_path, environment);
        ConfigureLogging(line.in_memory ? "OrderService(in-memory)" : "OrderService", settings.log_level,
                         settings.log_format);

        EventLoop loop;
        std::unique_ptr<embedded::EmbeddedSystem> system;
        std::unique_ptr<RabbitMqTransport> rabbitmq;
        std::unique_ptr<order_service::OrderServiceHost> orders;
        const int code = RunUntilSignalled(loop, [&] {
            if (line.in_memory) {
                auto all = embedded::EmbeddedSettings::Load(std::filesystem::path(line.config_path).parent_path(),
                                                            environment);
                all.orders = settings;
                system = std::make_unique<embedded::EmbeddedSystem>(loop, std::move(all));
                if (auto status = system->Start(); !status.ok()) throw std::runtime_error(status.message());
                system->StartHttp();
                return RunningService{[&](std::function<void()> done) { system->Stop(done); }};
            }
            rabbitmq = std::make_unique<RabbitMqTransport>(loop, settings.rabbitmq, "OrderService");
            if (auto status = rabbitmq->Start(); !status.ok()) throw std::runtime_error(status.message());
            orders = std::make_unique<order_service::OrderServiceHost>(loop, *rabbitmq, settings);
            if (auto* registry = orders->metrics()) AddProcessMetrics(*registry);
            if (auto status = orders->Start(); !status.ok()) throw std::runtime_error(status.message());
            orders->StartHttp();
            return RunningService{
                [&](std::function<void()> done) { orders->Stop([&, done] { rabbitmq->Close(done); }); }};
        });
        system.reset();
        orders.reset();
        rabbitmq.reset();
        return code;
    } catch (const std::exception& e) {
        spdlog::critical("OrderService: {}", e.what());
        return 2;
    }
}
