#include "Hosting/ServiceRunner.h"

#include <spdlog/spdlog.h>

#include <csignal>
#include <optional>

namespace messaging {

CommandLine ParseCommandLine(int argc, char** argv, const std::string& service_name) {
    CommandLine line;
    line.config_path = "appsettings/" + service_name + ".json";
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--config" && i + 1 < argc)
            line.config_path = argv[++i];
        else if (arg.rfind("--config=", 0) == 0)
            line.config_path = arg.substr(9);
        else if (arg == "--in-memory")
            line.in_memory = true;
        else
            line.unknown.push_back(arg);
    }
    return line;
}

int RunUntilSignalled(EventLoop& loop, const std::function<RunningService()>& start) {
    std::signal(SIGPIPE, SIG_IGN);
    std::optional<RunningService> service;
    int exit_code = 0;
    bool stopping = false;
    auto shutdown = [&](const char* why) {
        if (stopping) return;
        stopping = true;
        spdlog::info("{}: stopping (finishing in-flight messages)", why);
        if (!service) {
            loop.Stop();
            return;
        }
        service->stop([&] {
            spdlog::info("stopped cleanly");
            loop.Stop();
        });
    };
    SignalWatcher term(loop, SIGTERM, [&] { shutdown("SIGTERM"); });
    SignalWatcher interrupt(loop, SIGINT, [&] { shutdown("SIGINT"); });
    loop.Post([&] {
        try {
            service = start();
        } catch (const std::exception& e) {
            spdlog::critical("cannot start: {}", e.what());
            exit_code = 1;
            loop.Stop();
        }
    });
    loop.Run();
    return exit_code;
}

}  // namespace messaging
