#include "MassTransitTwin/WireDiff.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string_view>

#include "Wire/TraceContext.h"

namespace twin_test {
namespace {

using contracts::Json;
using contracts::OrderedJson;
using namespace std::chrono_literals;

bool Ignored(const std::string& exchange) {
    return exchange.empty() || exchange.rfind("amq.", 0) == 0;
}

std::string KeyOf(const OrderedJson& body) {
    if (!body.is_object()) return {};
    // A raw JSON body is the message itself.
    if (auto id = body.find("orderId"); id != body.end() && id->is_string()) return id->get<std::string>();
    const auto message = body.find("message");
    if (message == body.end() || !message->is_object()) return {};
    if (auto id = message->find("orderId"); id != message->end() && id->is_string()) return id->get<std::string>();
    if (auto inner = message->find("message"); inner != message->end() && inner->is_object())
        if (auto id = inner->find("orderId"); id != inner->end() && id->is_string()) return id->get<std::string>();
    return {};
}

bool IsGuid(const std::string& text) {
    if (text.size() != 36) return false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? text[i] != '-' : !std::isxdigit(static_cast<unsigned char>(text[i]))) return false;
    }
    return true;
}

// yyyy-mm-ddThh:mm:ss, an optional fraction of 1 to 7 digits, then Z.
bool IsUtcTime(const std::string& text) {
    static constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
    if (text.size() < kShape.size() + 1 || text.back() != 'Z') return false;
    for (std::size_t i = 0; i < kShape.size(); ++i)
        if (kShape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(text[i])) : text[i] != kShape[i]) return false;
    const std::size_t rest = text.size() - 1 - kShape.size();
    if (rest == 0) return true;
    if (text[kShape.size()] != '.' || rest < 2 || rest > 8) return false;
    for (std::size_t i = kShape.size() + 1; i + 1 < text.size(); ++i)
        if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
    return true;
}

// Addresses name the broker and the vhost of their run, and bus addresses the host and process:
// those parts are replaced by fixed names; GUIDs, times and traceparents (MT-Activity-Id) are
// compared by their form only.
std::string Normalize(const std::string& text, const std::string& vhost) {
    if (IsGuid(text)) return "<guid>";
    if (messaging::TraceContext::Parse(text)) return "<traceparent>";
    if (IsUtcTime(text)) return "<time>";
    static constexpr std::string_view kScheme = "rabbitmq://";
    if (text.rfind(kScheme, 0) != 0) return text;
    const std::size_t path = text.find('/', kScheme.size());
    if (path == std::string::npos) return text;
    std::string rest = text.substr(path + 1);
    if (rest.rfind(vhost + "/", 0) == 0) rest = "{vhost}/" + rest.substr(vhost.size() + 1);
    const std::size_t name = rest.rfind('/') == std::string::npos ? 0 : rest.rfind('/') + 1;
    const std::size_t query = rest.find('?', name);
    if (rest.find("_bus_", name) < query)
        rest.replace(name, (query == std::string::npos ? rest.size() : query) - name, "{machine}_{process}_bus_{id}");
    return "rabbitmq://{broker}/" + rest;
}

std::string TypeName(const OrderedJson& value) {
    if (value.is_null()) return "null";
    if (value.is_string()) return "string";
    if (value.is_boolean()) return "bool";
    if (value.is_number_integer()) return "integer";
    if (value.is_number()) return "number";
    if (value.is_array()) return "array";
    return "object";
}

std::string Describe(const OrderedJson& value, const std::string& vhost) {
    if (value.is_string()) return '"' + Normalize(value.get<std::string>(), vhost) + '"';
    if (value.is_object() || value.is_array()) return TypeName(value);
    return value.dump();
}

// Values whose text is the host's, the process's or a stack's: only their JSON type is compared.
bool TextOnlyField(const std::string& name) {
    return name == "host" || name == "stackTrace" || name == "source" || name.rfind("MT-Host-", 0) == 0 ||
           name == "MT-Fault-StackTrace" || name == "x-dotnet-pub-seq-no";
}

struct Comparer {
    const std::string& twin_vhost;
    const std::string& ours_vhost;
    std::vector<Difference>& out;

    void Report(const std::string& where, const std::string& twin, const std::string& ours) {
        out.push_back({where, "twin " + twin + ", ours " + ours});
    }

    void Compare(const std::string& where, const OrderedJson& twin, const OrderedJson& ours, bool text_only) {
        if (TypeName(twin) != TypeName(ours)) {
            // An integer and a number are the same JSON type to a reader.
            if (!(twin.is_number() && ours.is_number()))
                return Report(where, Describe(twin, twin_vhost), Describe(ours, ours_vhost));
        }
        if (twin.is_object()) {
            std::vector<std::string> twin_keys, ours_keys;
            for (auto it = twin.begin(); it != twin.end(); ++it) twin_keys.push_back(it.key());
            for (auto it = ours.begin(); it != ours.end(); ++it) ours_keys.push_back(it.key());
            for (const auto& key : twin_keys)
                if (!ours.contains(key)) Report(where + "." + key, Describe(twin[key], twin_vhost), "missing");
            for (const auto& key : ours_keys)
                if (!twin.contains(key)) Report(where + "." + key, "missing", Describe(ours[key], ours_vhost));
            std::vector<std::string> twin_common, ours_common;
            for (const auto& key : twin_keys)
                if (ours.contains(key)) twin_common.push_back(key);
            for (const auto& key : ours_keys)
                if (twin.contains(key)) ours_common.push_back(key);
            if (twin_common != ours_common) {
                auto join = [](const std::vector<std::string>& keys) {
                    std::string text;
                    for (const auto& key : keys) text += (text.empty() ? "" : ",") + key;
                    return "[" + text + "]";
                };
                Report(where + " field order", join(twin_common), join(ours_common));
            }
            for (const auto& key : twin_common)
                Compare(where + "." + key, twin[key], ours[key], text_only || TextOnlyField(key));
            return;
        }
        if (twin.is_array()) {
            if (twin.size() != ours.size())
                Report(where, std::to_string(twin.size()) + " items", std::to_string(ours.size()) + " items");
            for (std::size_t i = 0; i < std::min(twin.size(), ours.size()); ++i)
                Compare(where + "[" + std::to_string(i) + "]", twin[i], ours[i], text_only);
            return;
        }
        if (text_only) return;
        const std::string twin_text = Describe(twin, twin_vhost);
        const std::string ours_text = Describe(ours, ours_vhost);
        if (twin_text != ours_text) Report(where, twin_text, ours_text);
    }
};

OrderedJson HeadersAsJson(const messaging::HeaderTable& headers) {
    OrderedJson out = OrderedJson::object();
    for (const auto& [name, value] : headers) {
        OrderedJson entry;
        std::visit(
            [&](const auto& v) {
                using T = std::decay_t<decltype(v)>;
                if constexpr (std::is_same_v<T, std::string>)
                    entry["type"] = "string";
                else if constexpr (std::is_same_v<T, std::int32_t>)
                    entry["type"] = "int32";
                else if constexpr (std::is_same_v<T, std::int64_t>)
                    entry["type"] = "int64";
                else
                    entry["type"] = "bool";
                entry["value"] = v;
            },
            value);
        out[name] = entry;
    }
    return out;
}

OrderedJson PropertiesAsJson(const broker_test::RawMessage& raw) {
    OrderedJson out;
    const auto& p = raw.properties;
    auto optional = [](const std::string& value) { return value.empty() ? OrderedJson() : OrderedJson(value); };
    out["content_type"] = optional(p.content_type);
    out["delivery_mode"] = p.delivery_mode;
    out["message_id"] = optional(p.message_id);
    out["correlation_id"] = optional(p.correlation_id);
    out["expiration"] = optional(p.expiration);
    out["routing_key"] = raw.routing_key;
    return out;
}

}  // namespace

bool WildcardMatch(const std::string& pattern, const std::string& text) {
    // Iterative glob with '*' only.
    std::size_t p = 0, t = 0, star = std::string::npos, mark = 0;
    while (t < text.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            mark = t;
        } else if (p < pattern.size() && pattern[p] == text[t]) {
            ++p;
            ++t;
        } else if (star != std::string::npos) {
            p = star + 1;
            t = ++mark;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') ++p;
    return p == pattern.size();
}

WireCapture::WireCapture(const broker_test::ScopedVhost& vhost) : vhost_(vhost), client_(vhost.name()) {
    broker_test::ManagementApi api;
    for (const auto& exchange : api.Get("exchanges/" + broker_test::Encode(vhost.name()))) {
        const std::string name = exchange["name"].get<std::string>();
        if (Ignored(name)) continue;
        const std::string spy = "spy." + name;
        client_.Tap(spy, {name});
        spies_.push_back(name);
    }
}

void WireCapture::DrainOnce() {
    for (const auto& exchange : spies_) {
        for (auto& raw : client_.Drain("spy." + exchange)) {
            if (raw.exchange != exchange) continue;  // it reached this exchange through a binding
            CapturedMessage message;
            message.body = OrderedJson::parse(raw.body, nullptr, false);
            if (message.body.is_discarded()) message.body = OrderedJson();
            message.key = KeyOf(message.body);
            message.raw = std::move(raw);
            messages_[exchange].push_back(std::move(message));
        }
    }
}

bool WireCapture::Collect(const std::map<std::string, std::size_t>& expected) {
    auto met = [&] {
        for (const auto& [exchange, count] : expected) {
            auto it = messages_.find(exchange);
            if ((it == messages_.end() ? 0 : it->second.size()) < count) return false;
        }
        return true;
    };
    const bool complete = test_support::WaitFor(
        [&] {
            DrainOnce();
            return met();
        },
        30s);
    for (auto& [exchange, list] : messages_)
        std::stable_sort(list.begin(), list.end(),
                         [](const CapturedMessage& a, const CapturedMessage& b) { return a.key < b.key; });
    return complete;
}

std::string WireCapture::Summary() const {
    std::string text;
    for (const auto& [exchange, list] : messages_) text += "  " + exchange + ": " + std::to_string(list.size()) + "\n";
    return text;
}

TopologySnapshot ReadTopology(const broker_test::ScopedVhost& vhost) {
    broker_test::ManagementApi api;
    const std::string v = broker_test::Encode(vhost.name());
    TopologySnapshot snapshot;
    for (const auto& e : api.Get("exchanges/" + v)) {
        const std::string name = e["name"].get<std::string>();
        if (Ignored(name)) continue;
        snapshot.exchanges[name] = OrderedJson{{"type", e["type"]},
                                               {"durable", e["durable"]},
                                               {"auto_delete", e["auto_delete"]},
                                               {"internal", e["internal"]},
                                               {"arguments", OrderedJson::parse(e["arguments"].dump())}};
    }
    for (const auto& q : api.Get("queues/" + v)) {
        const std::string name = q["name"].get<std::string>();
        if (name.rfind("spy.", 0) == 0) continue;
        snapshot.queues[name] = OrderedJson{{"durable", q["durable"]},
                                            {"auto_delete", q["auto_delete"]},
                                            {"exclusive", q["exclusive"]},
                                            {"arguments", OrderedJson::parse(q["arguments"].dump())}};
    }
    for (const auto& b : api.Get("bindings/" + v)) {
        const std::string source = b["source"].get<std::string>();
        const std::string destination = b["destination"].get<std::string>();
        if (source.empty() || destination.rfind("spy.", 0) == 0) continue;
        snapshot.bindings[source + " -> " + destination + " (" + b["destination_type"].get<std::string>() + ")"] =
            OrderedJson{{"routing_key", b["routing_key"]}, {"arguments", OrderedJson::parse(b["arguments"].dump())}};
    }
    return snapshot;
}

std::vector<Difference> CompareMessages(const WireCapture& twin, const std::string& twin_vhost, const WireCapture& ours,
                                        const std::string& ours_vhost) {
    std::vector<Difference> out;
    Comparer comparer{twin_vhost, ours_vhost, out};
    std::set<std::string> exchanges;
    for (const auto& [exchange, list] : twin.messages()) exchanges.insert(exchange);
    for (const auto& [exchange, list] : ours.messages()) exchanges.insert(exchange);
    static const std::vector<CapturedMessage> kNone;
    for (const auto& exchange : exchanges) {
        const auto twin_it = twin.messages().find(exchange);
        const auto ours_it = ours.messages().find(exchange);
        const auto& twin_list = twin_it == twin.messages().end() ? kNone : twin_it->second;
        const auto& ours_list = ours_it == ours.messages().end() ? kNone : ours_it->second;
        const std::string where = "message " + exchange;
        if (twin_list.size() != ours_list.size())
            comparer.Report(where + " count", std::to_string(twin_list.size()), std::to_string(ours_list.size()));
        // The first message about each key (order id) on each side.
        std::map<std::string, const CapturedMessage*> twin_by_key, ours_by_key;
        for (const auto& m : twin_list) twin_by_key.emplace(m.key, &m);
        for (const auto& m : ours_list) ours_by_key.emplace(m.key, &m);
        for (const auto& [key, twin_message] : twin_by_key) {
            auto match = ours_by_key.find(key);
            if (match == ours_by_key.end()) continue;  // the count says so
            const CapturedMessage& mine = *match->second;
            comparer.Compare(where + " property", PropertiesAsJson(twin_message->raw), PropertiesAsJson(mine.raw),
                             false);
            comparer.Compare(where + " header", HeadersAsJson(twin_message->raw.properties.headers),
                             HeadersAsJson(mine.raw.properties.headers), false);
            if (twin_message->body.is_null() || mine.body.is_null()) {
                if (twin_message->raw.body != mine.raw.body)
                    comparer.Report(where + " body", "'" + twin_message->raw.body + "'", "'" + mine.raw.body + "'");
                continue;
            }
            comparer.Compare(where + " envelope", twin_message->body, mine.body, false);
        }
    }
    return out;
}

std::vector<Difference> CompareTopology(const TopologySnapshot& twin, const TopologySnapshot& ours) {
    std::vector<Difference> out;
    const std::string none;
    Comparer comparer{none, none, out};
    auto compare = [&](const char* kind, const std::map<std::string, OrderedJson>& a,
                       const std::map<std::string, OrderedJson>& b) {
        std::set<std::string> names;
        for (const auto& [name, value] : a) names.insert(name);
        for (const auto& [name, value] : b) names.insert(name);
        for (const auto& name : names) {
            const std::string where = std::string("topology ") + kind + " " + name;
            auto in_a = a.find(name);
            auto in_b = b.find(name);
            if (in_a == a.end())
                comparer.Report(where, "missing", "declared");
            else if (in_b == b.end())
                comparer.Report(where, "declared", "missing");
            else
                comparer.Compare(where, in_a->second, in_b->second, false);
        }
    };
    compare("exchange", twin.exchanges, ours.exchanges);
    compare("queue", twin.queues, ours.queues);
    compare("binding", twin.bindings, ours.bindings);
    return out;
}

}  // namespace twin_test
