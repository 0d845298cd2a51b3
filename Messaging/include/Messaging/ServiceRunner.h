// What every service executable does around its host: read `--config PATH` (default
// appsettings/<Service>.json), connect the RabbitMQ transport, run the loop, and on SIGTERM/SIGINT
// stop taking work, let in-flight messages finish, close the connection and exit 0.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "Messaging/EventLoop.h"
#include "Messaging/Status.h"
#include "Messaging/Transport.h"

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

}  // namespace messaging
