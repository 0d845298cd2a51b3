// The differential wire test's machinery: spy queues bound to every exchange of a vhost capture what
// a deployment publishes; the captures and the topologies of two deployments (the MassTransit twin's
// and ours) are compared message type by message type, and every difference is named. Which of them
// we accept, and why, is listed in AcceptedDifferences.cpp and nowhere else.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "Broker/BrokerSupport.h"

namespace twin_test {

// One message as a spy saw it, with its body parsed (null when it is not JSON).
struct CapturedMessage {
    broker_test::RawMessage raw;
    contracts::OrderedJson body;
    std::string key;  // what pairs it with its counterpart: the order id it is about, if any
};

// Everything published to each exchange of a vhost while the spies were bound.
class WireCapture {
  public:
    // Binds a spy queue to every exchange the vhost has now (amq.* and the default exchange aside).
    explicit WireCapture(const broker_test::ScopedVhost& vhost);
    // Drains the spies until every exchange in `expected` has at least that many messages published
    // to it directly, or 30 s pass. False when the counts were not met. A message beyond the expected
    // counts is compared only if it arrived by then.
    bool Collect(const std::map<std::string, std::size_t>& expected);
    const std::map<std::string, std::vector<CapturedMessage>>& messages() const { return messages_; }
    std::string Summary() const;  // exchange: count, one a line

  private:
    void DrainOnce();
    const broker_test::ScopedVhost& vhost_;
    broker_test::RawAmqpClient client_;
    std::vector<std::string> spies_;
    std::map<std::string, std::vector<CapturedMessage>> messages_;
};

// Exchanges, queues and bindings as the management API shows them, spies and amq.* left out.
struct TopologySnapshot {
    std::map<std::string, contracts::OrderedJson> exchanges;  // name -> type, durable, auto_delete, ...
    std::map<std::string, contracts::OrderedJson> queues;     // name -> durable, ..., arguments
    std::map<std::string, contracts::OrderedJson> bindings;   // "source -> destination (type)" -> key, args
};
TopologySnapshot ReadTopology(const broker_test::ScopedVhost& vhost);

struct Difference {
    std::string where;  // e.g. "message Contracts:ProcessPayment envelope.initiatorId"
    std::string what;   // "twin <guid>, ours null"
};

// What the twin (the oracle) wrote against what ours wrote; the vhost names are taken out of
// addresses so that the two runs compare.
std::vector<Difference> CompareMessages(const WireCapture& twin, const std::string& twin_vhost, const WireCapture& ours,
                                        const std::string& ours_vhost);
std::vector<Difference> CompareTopology(const TopologySnapshot& twin, const TopologySnapshot& ours);

struct AcceptedDifference {
    std::string where;  // a pattern over Difference::where; '*' matches any run of characters
    std::string reason;
};
const std::vector<AcceptedDifference>& AcceptedDifferences();

bool WildcardMatch(const std::string& pattern, const std::string& text);

}  // namespace twin_test
