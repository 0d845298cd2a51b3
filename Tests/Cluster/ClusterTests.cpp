// Against a private 3-node RabbitMQ cluster (scripts/cluster.sh): the three services given the nodes
// as RabbitMQ.Hosts, on quorum queues replicated to all three, go on when the node they are connected
// to dies; each moves to the next node, and no order is lost.
#include <doctest/doctest.h>

#include <algorithm>

#include "Broker/BrokerSupport.h"
#include "Cluster/ClusterSupport.h"

using namespace broker_test;
using namespace cluster_test;
using namespace contracts;
using namespace std::chrono_literals;

TEST_SUITE("Cluster") {
    TEST_CASE("A node dies under OrderService and its queue's leader - the service moves on - no order is lost") {
        REQUIRE(RunningNodes() == std::vector<int>{1, 2, 3});
        // Brought back whatever happens: the other cluster tests need all three nodes.
        struct Revive {
            ~Revive() {
                try {
                    if (RunningNodes().size() < 3) ReviveNode(2);
                } catch (...) {
                }
            }
        } revive;
        ScopedVhost vhost;
        // OrderService connects to node 2 first, so its queue's leader is there (quorum queues lead where
        // they are declared); the workers are on node 3. Node 1 serves the test's management API.
        BrokerSystem system(vhost, {.queue_arguments = {{"x-queue-type", std::string("quorum")},
                                                        {"x-quorum-initial-group-size", std::int32_t{3}}},
                                    .hosts = {{"OrderService", Hosts({2, 3, 1})},
                                              {"InventoryService", Hosts({3, 1, 2})},
                                              {"PaymentService", Hosts({3, 1, 2})}}});
        auto order_node = [&] {
            return system.loop().Invoke([&] {
                auto& transport = system.transport(0);
                return transport.IsSettled() ? transport.node().ToString() : std::string();
            });
        };
        REQUIRE(order_node() == NodeAddress(2));
        ManagementApi api;
        const Json queue = api.Get("queues/" + Encode(vhost.name()) + "/order-service");
        CHECK(queue.value("type", "") == "quorum");
        CHECK(queue.value("leader", "") == NodeName(2));
        CHECK(queue["members"].size() == 3);

        // Orders before the death, and a burst whose messages are in flight when the node goes.
        std::vector<std::string> ids;
        for (int i = 0; i < 5; ++i) ids.push_back("before-" + std::to_string(i) + "3");
        for (const auto& id : ids) SubmitOrder(system, id);
        REQUIRE(system.WaitForStatus(ids.back(), order_service::OrderStatus::kCompleted, 20s));
        for (int i = 0; i < 20; ++i) ids.push_back("burst-" + std::to_string(i) + (i % 4 == 1 ? "1" : "3"));
        for (auto it = ids.end() - 20; it != ids.end(); ++it) SubmitOrder(system, *it);
        KillNode(2);

        // The service reconnects to the next node on its list, node 3, without a restart; the queue
        // elects a leader among the two nodes left.
        REQUIRE(test_support::WaitFor([&] { return order_node() == NodeAddress(3); }, 20s));
        CHECK(test_support::WaitFor(
            [&] {
                const Json now = api.Get("queues/" + Encode(vhost.name()) + "/order-service");
                const std::string leader = now.value("leader", "");
                return leader == NodeName(1) || leader == NodeName(3);
            },
            20s));
        for (int i = 0; i < 5; ++i) ids.push_back("after-" + std::to_string(i) + "3");
        for (auto it = ids.end() - 5; it != ids.end(); ++it) SubmitOrder(system, *it);

        // Every order reaches the end its suffix gives it, and nothing stays unacknowledged.
        for (const auto& id : ids) {
            const auto expected =
                id.back() == '1' ? order_service::OrderStatus::kFailed : order_service::OrderStatus::kCompleted;
            CHECK_MESSAGE(system.WaitForStatus(id, expected, 30s), id);
        }
        CHECK(test_support::WaitFor([&] { return QueuesSettled(api, vhost); }, 20s));

        // The node comes back into the cluster, and the queue has its three members again.
        ReviveNode(2);
        CHECK(test_support::WaitFor([&] { return RunningNodes() == std::vector<int>{1, 2, 3}; }, 30s));
    }
}
