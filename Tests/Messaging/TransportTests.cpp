// Transport: topology and the in-memory broker's routing and declarations.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <future>

#include "Support/Waiting.h"
#include "Transport/InMemoryTransport.h"
#include "Transport/Topology.h"

using namespace messaging;
using namespace std::chrono_literals;

TEST_SUITE("Transport.Topology") {
    TEST_CASE("A receive endpoint declares its queue and exchange and type bindings but not _error or _skipped") {
        const auto topology = ReceiveEndpointTopology("order-service", {contracts::ContractName("OrderSubmitted")});
        CHECK(topology.queues.size() == 1);
        CHECK(std::count(topology.queue_bindings.begin(), topology.queue_bindings.end(),
                         QueueBinding{"order-service", "order-service"}) == 1);
        CHECK(topology.queue_bindings.size() == 1);
        CHECK(std::count(topology.exchange_bindings.begin(), topology.exchange_bindings.end(),
                         ExchangeBinding{"Contracts:OrderSubmitted", "order-service"}) == 1);
        for (const auto& exchange : topology.exchanges) {
            CHECK(exchange.type == "fanout");
            CHECK(exchange.durable);
            CHECK_FALSE(exchange.auto_delete);
        }
        for (const auto& queue : topology.queues) {
            CHECK(queue.durable);
            CHECK_FALSE(queue.exclusive);
            CHECK_FALSE(queue.auto_delete);
        }
    }

    TEST_CASE("In memory: a message reaches each bound queue once - a different re-declare fails") {
        EventLoopThread loop_thread;
        loop_thread.loop().Invoke([&] {
            InMemoryTransport transport(loop_thread.loop());
            Topology topology = QueueWithExchange("q");
            topology.AddExchange("a");
            topology.AddExchange("b");
            topology.BindExchange("a", "q");
            topology.BindExchange("a", "b");
            topology.BindExchange("b", "q");
            REQUIRE(transport.DeclareNow(topology).ok());
            transport.Publish("a", TransportMessage{"x", {}, ""}, nullptr);
            CHECK(transport.ReadyCount("q") == 1);
            Topology conflicting;
            conflicting.exchanges.push_back(ExchangeSpec{"a", "direct"});
            CHECK(transport.DeclareNow(conflicting).code() == StatusCode::kPreconditionFailed);
        });
    }
}
