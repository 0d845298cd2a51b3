#include "Support/Waiting.h"

#include <random>
#include <thread>

namespace test_support {

TempDir::TempDir() {
    std::random_device device;
    path_ =
        std::filesystem::temp_directory_path() / ("saga-test-" + std::to_string(device()) + std::to_string(device()));
    std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        if (condition()) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);  // polling interval of a deadline-bounded wait
    }
}

}  // namespace test_support
