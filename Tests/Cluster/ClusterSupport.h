// Support for the tests that run against the private 3-node RabbitMQ cluster (scripts/cluster.sh,
// started by ctest's cluster fixture): where its nodes are, and killing and reviving one of them.
// The broker test support (Broker/BrokerSupport.h) talks to node 1 as if it were the single node.
#pragma once

#include <string>
#include <vector>

namespace cluster_test {

// Node n (1-3): its AMQP address as RabbitMQ.Hosts lists it, and its Erlang node name.
std::string NodeAddress(int n);
std::string NodeName(int n);
// The nodes in the order given, as a RabbitMQ.Hosts list: a service connects to the first that answers.
std::vector<std::string> Hosts(const std::vector<int>& order);
// kill -9 of node n's Erlang VM; ReviveNode starts it again and returns once it runs in the cluster.
void KillNode(int n);
void ReviveNode(int n);
// The node numbers the cluster reports running.
std::vector<int> RunningNodes();

}  // namespace cluster_test
