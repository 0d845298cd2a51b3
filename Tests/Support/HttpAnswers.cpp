#include "Support/HttpAnswers.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace test_support {

void RecordAnswersOf(httplib::Client& client) {
    const char* file = std::getenv("SAGA_HTTP_ANSWERS");
    if (!file || !*file) return;
    client.set_logger([path = std::string(file)](const httplib::Request& request, const httplib::Response& response) {
        const std::string type = response.get_header_value("Content-Type");
        const bool json = type.rfind("application/json", 0) == 0;
        const nlohmann::json answer = {{"method", request.method},
                                       {"path", request.path},
                                       {"status", response.status},
                                       {"contentType", type},
                                       {"body", json ? response.body : std::string()},
                                       {"bodyKept", json}};
        const std::string line = answer.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
        // One write with O_APPEND: the test processes ctest runs side by side append whole lines.
        const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) throw std::runtime_error("cannot open " + path);
        const ssize_t written = ::write(fd, line.data(), line.size());
        ::close(fd);
        if (written != static_cast<ssize_t>(line.size())) throw std::runtime_error("cannot append to " + path);
    });
}

}  // namespace test_support
