// PaymentService: wiring only. See PaymentService/README.md.
#include <spdlog/spdlog.h>

#include "PaymentService/PaymentServiceHost.h"
#include "Messaging/RabbitMqTransport.h"
#include "Messaging/ServiceRunner.h"

int main(int argc, char** argv) {
    using namespace messaging;
    try {
        const CommandLine line = ParseCommandLine(argc, argv, "PaymentService");
        if (!line.unknown.empty() || line.in_memory) throw SettingsError("usage: PaymentService [--config PATH]");
        auto settings = payment_service::PaymentSettings::Load(line.config_path, ProcessEnvironment());
        ConfigureLogging("PaymentService", settings.log_level);
        EventLoop loop;
        std::unique_ptr<RabbitMqTransport> transport;
        std::unique_ptr<payment_service::PaymentServiceHost> host;
        const int code = RunUntilSignalled(loop, [&] {
            transport = std::make_unique<RabbitMqTransport>(loop, settings.rabbitmq, "PaymentService");
            transport->Start();
            host = std::make_unique<payment_service::PaymentServiceHost>(loop, *transport, settings);
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
        spdlog::critical("PaymentService: {}", e.what());
        return 2;
    }
}
