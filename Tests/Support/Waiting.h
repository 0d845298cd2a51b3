// What every test suite may use: a temporary directory removed afterwards, and waiting on a
// condition with a deadline (never a sleep as synchronisation).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

namespace test_support {

using namespace std::chrono_literals;

class TempDir {
  public:
    TempDir();
    ~TempDir();
    std::string File(const std::string& name) const { return (path_ / name).string(); }
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

// Polls `condition` until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s);

}  // namespace test_support
