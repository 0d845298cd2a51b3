// InventoryService: wiring only. See InventoryService/README.md.
#include <spdlog/spdlog.h>

#include "InventoryService/InventoryServiceHost.h"
#include "Messaging/RabbitMqTransport.h"
#include "Messaging/ServiceRunner.h"

int main(int argc, char** argv) {
    using namespace messaging;
    try {
        const CommandLine line = ParseCommandLine(argc, argv, "InventoryService");
        if (!line.unknown.empty() || line.in_memory) throw SettingsError("usage: InventoryService [--config PATH]");
        auto settings = inventory_service::InventorySettings::Load(line.config_path, ProcessEnvironment());
        ConfigureLogging("InventoryService", settings.log_level);
        EventLoop loop;
        std::unique_ptr<RabbitMqTransport> transport;
        std::unique_ptr<inventory_service::InventoryServiceHost> host;
        const int code = RunUntilSignalled(loop, [&] {
            transport = std::make_unique<RabbitMqTransport>(loop, settings.rabbitmq, "InventoryService");
            transport->Start();
            host = std::make_unique<inventory_service::InventoryServiceHost>(loop, *transport, settings);
            if (auto status = host->Start(); !status.ok()) throw std::runtime_error(status.message());
            return RunningService{[&](std::function<void()> done) {
                host->Stop([&, done] {
                    transport->Close();
                    done();
                });
            }};
        });
        host.reset();
        transport.reset();
        return code;
    } catch (const std::exception& e) {
        spdlog::critical("InventoryService: {}", e.what());
        return 2;
    }
}
