#include "Cluster/ClusterSupport.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>

#include "Broker/BrokerSupport.h"
#include "Contracts/JsonFields.h"

namespace cluster_test {
namespace {

// The base port scripts/cluster.sh wrote into the cluster's directory, or nullopt.
std::optional<int> ReadBasePort(const std::string& dir) {
    std::ifstream file(dir + "/base_port");
    int port = 0;
    if (!(file >> port)) return std::nullopt;
    return port;
}

struct ClusterEnvironment {
    std::string dir;
    int base_port = 0;
    static const ClusterEnvironment& Get() {
        static const ClusterEnvironment environment = [] {
            const char* dir = std::getenv("SAGA_CLUSTER_DIR");
            if (!dir || !*dir)
                throw std::runtime_error(
                    "SAGA_CLUSTER_DIR is not set: run the cluster tests through ctest, whose "
                    "cluster fixture starts scripts/cluster.sh");
            const auto base_port = ReadBasePort(dir);
            if (!base_port) throw std::runtime_error(std::string("no cluster in ") + dir);
            return ClusterEnvironment{dir, *base_port};
        }();
        return environment;
    }
    int amqp_port(int n) const { return base_port + 10 * (n - 1); }
};

// The broker test support finds its node in SAGA_TEST_AMQP_PORT and SAGA_TEST_MANAGEMENT_PORT: in this
// executable, that is node 1 of the cluster. Set before main, so before the support first reads them.
const bool kSupportPointsAtNodeOne = [] {
    const char* dir = std::getenv("SAGA_CLUSTER_DIR");
    const auto base_port = dir && *dir ? ReadBasePort(dir) : std::nullopt;
    if (!base_port) return false;
    ::setenv("SAGA_TEST_AMQP_PORT", std::to_string(*base_port).c_str(), 1);
    ::setenv("SAGA_TEST_MANAGEMENT_PORT", std::to_string(*base_port + 2).c_str(), 1);
    ::unsetenv("SAGA_BROKER_DIR");  // the single node's; no test here may restart it
    return true;
}();

std::string RunCluster(const std::string& command, int n) {
    const auto& environment = ClusterEnvironment::Get();
    std::string line = "bash '" + broker_test::SourceDir() + "/scripts/cluster.sh' " + command + " '" +
                       environment.dir + "'" + (n > 0 ? " " + std::to_string(n) : std::string()) + " 2>&1";
    FILE* pipe = ::popen(line.c_str(), "r");
    if (!pipe) throw std::runtime_error("cannot run " + line);
    std::string output;
    std::array<char, 4096> buffer{};
    while (std::fgets(buffer.data(), buffer.size(), pipe)) output += buffer.data();
    if (::pclose(pipe) != 0) throw std::runtime_error(line + " failed: " + output);
    return output;
}

}  // namespace

std::string NodeAddress(int n) {
    return "127.0.0.1:" + std::to_string(ClusterEnvironment::Get().amqp_port(n));
}

std::string NodeName(int n) {
    return "saga-" + std::to_string(ClusterEnvironment::Get().amqp_port(n)) + "@localhost";
}

std::vector<std::string> Hosts(const std::vector<int>& order) {
    std::vector<std::string> hosts;
    for (int n : order) hosts.push_back(NodeAddress(n));
    return hosts;
}

void KillNode(int n) {
    RunCluster("kill", n);
}

void ReviveNode(int n) {
    RunCluster("revive", n);
}

std::vector<int> RunningNodes() {
    std::vector<int> running;
    const auto nodes = broker_test::ManagementApi().Get("nodes");
    for (int n = 1; n <= 3; ++n)
        for (const auto& node : nodes)
            if (node.value("name", "") == NodeName(n) && node.value("running", false)) running.push_back(n);
    return running;
}

}  // namespace cluster_test
