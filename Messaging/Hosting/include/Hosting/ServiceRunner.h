// What every service executable does around its host: read `--config PATH` (default
// appsettings/<Service>.json), connect the RabbitMQ transport, run the loop (a worker with its admin
// listener), and on SIGTERM/SIGINT stop taking work, let in-flight messages finish, close the
// connection and exit 0.
#pragma once

#include <spdlog/spdlog.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "Hosting/AdminServer.h"
#include "Hosting/Settings.h"
#include "Metrics/ProcessMetrics.h"
#include "RabbitMq/RabbitMqTransport.h"
#include "Runtime/EventLoop.h"
#include "Runtime/Status.h"
#include "Transport/Transport.h"

namespace messaging {

struct CommandLine {
    std::string config_path;
    bool in_memory = false;
    std::vector<std::string> unknown;
};

CommandLine ParseCommandLine(int argc, char** argv, const std::string& service_name);

// A started service: `stop` is called on the loop thread at shutdown and calls its argument when done.
struct RunningService {
    std::function<void(std::function<void()>)> stop;
};

// Runs the loop until a signal stops it; `start` builds the service on the loop thread.
// Returns the process exit code.
int RunUntilSignalled(EventLoop& loop, const std::function<RunningService()>& start);

// The whole main() of a worker service: Settings has Load(path, environment), `rabbitmq`, `admin` and
// `log_level`; Host is built from (loop, transport, settings) and has Start(), Stop(done), Health()
// and metrics() (its registry, none when metrics are off; the process figures are added to it here).
template <class Settings, class Host>
int RunWorkerMain(int argc, char** argv, const std::string& service_name) {
    try {
        const CommandLine line = ParseCommandLine(argc, argv, service_name);
        if (!line.unknown.empty() || line.in_memory) throw SettingsError("usage: " + service_name + " [--config PATH]");
        const Settings settings = Settings::Load(line.config_path, ProcessEnvironment());
        ConfigureLogging(service_name, settings.log_level, settings.log_format);
        EventLoop loop;
        std::unique_ptr<RabbitMqTransport> transport;
        std::unique_ptr<Host> host;
        std::unique_ptr<AdminServer> admin;
        const int code = RunUntilSignalled(loop, [&] {
            transport = std::make_unique<RabbitMqTransport>(loop, settings.rabbitmq, service_name);
            if (auto status = transport->Start(); !status.ok()) throw std::runtime_error(status.message());
            host = std::make_unique<Host>(loop, *transport, settings);
            if (auto* registry = host->metrics()) metrics::AddProcessMetrics(*registry);
            if (auto status = host->Start(); !status.ok()) throw std::runtime_error(status.message());
            if (settings.admin.enabled) {
                admin = std::make_unique<AdminServer>(
                    loop, settings.admin, [&] { return host->Health(); }, host->metrics());
                admin->Start();
            }
            return RunningService{[&](std::function<void()> done) {
                // A probe that comes now finds the port closed: the worker is going away.
                if (admin) admin->StopAccepting();
                host->Stop([&, done] { transport->Close(done); });
            }};
        });
        admin.reset();
        host.reset();
        transport.reset();
        return code;
    } catch (const std::exception& e) {
        spdlog::critical("{}: {}", service_name, e.what());
        return 2;
    }
}

}  // namespace messaging
