// The benchmark tool (see bench/README.md). Four modes, each printing one JSON object:
//   ceiling: what the broker itself allows on this machine: chains of six persistent,
//            publisher-confirmed, acked hops through fanout exchanges (one per message of an order),
//            across three connections like the three services, with one SQLite WAL upsert per saga
//            step, at the size of the real envelopes.
//   chain:   the same chains started open-loop at a fixed rate, each timed from its start to its last
//            hop: the broker's own latency at that load, the floor under the system's.
//   load:    an open-loop load of POST /order at a fixed rate over keep-alive connections; each
//            order's outcome is read from a queue of our own bound to OrderCompleted and OrderFailed,
//            and latency runs from the order's scheduled send time to its final event (and, reported
//            apart, to its 202 answer).
//   max:     load in steps of rising rate until the system falls behind, then a few steps that halve
//            the last gap; the highest rate it kept up with.
// With --embedded CONFIG_DIR, load and max run the three services in this process on the in-memory bus
// (as `OrderService --in-memory`) and read the outcomes from it: what the system costs without a broker.
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "Embedded/EmbeddedSystem.h"
#include "Hosting/ServiceRunner.h"
#include "InventoryService/InventoryServiceHost.h"
#include "OrderPoster.h"
#include "OrderService/OrderServiceHost.h"
#include "PaymentService/PaymentServiceHost.h"
#include "RabbitMq/RabbitMqTransport.h"
#include "Storage/Sqlite.h"
#include "Transport/InMemoryTransport.h"
#include "Wire/Envelope.h"

using namespace std::chrono;
using contracts::Json;
using contracts::OrderedJson;
using messaging::EventLoopThread;
using messaging::RabbitMqTransport;

namespace {

// The transport connects in the background: wait (from another thread) until it is up.
void WaitUntilConnected(messaging::EventLoop& loop, RabbitMqTransport& transport, int timeout_seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds + 1);
    while (!loop.Invoke([&] { return transport.IsConnected(); })) {
        if (std::chrono::steady_clock::now() > deadline)
            throw std::runtime_error("cannot connect to RabbitMQ: " +
                                     loop.Invoke([&] { return transport.last_error(); }));
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

struct Options {
    std::string mode;
    std::string http_host = "127.0.0.1";
    int http_port = 5000;
    messaging::RabbitMqSettings rabbitmq;
    double rate = 500;
    double seconds = 10;
    int connections = 8;
    double failure_share = 0;  // 0.1 => 10% shortage and 10% declined
    std::string database = "bench-ceiling.db";
    std::string synchronous = "Normal";
    std::size_t message_size = 1100;
    int in_flight = 256;
    std::string embedded_config;  // load/max against the in-memory bus in this process, settings from here
    double step_factor = 1.2;     // max: each step offers this much more
    double max_p99_ms = 1000;     // max: a step whose p99 passes this has fallen behind
    int max_steps = 30;           // max: at most this many rates on the way up
    int refine_steps = 2;         // max: then this many steps between the last rate kept up with and the first not
    int decision_runs = 1;        // max: whether it kept up with a rate is the majority of up to this many runs
};

Options Parse(int argc, char** argv) {
    Options o;
    o.rabbitmq.username = "guest";
    o.rabbitmq.password = "guest";
    o.rabbitmq.host = "127.0.0.1";
    if (argc < 2) throw std::runtime_error("usage: SagaBench ceiling|chain|load|max [--option value]...");
    o.mode = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string key = argv[i], value = argv[i + 1];
        if (key == "--http-port")
            o.http_port = std::stoi(value);
        else if (key == "--amqp-port")
            o.rabbitmq.port = std::stoi(value);
        else if (key == "--vhost")
            o.rabbitmq.virtual_host = value;
        else if (key == "--rate")
            o.rate = std::stod(value);
        else if (key == "--seconds")
            o.seconds = std::stod(value);
        else if (key == "--connections")
            o.connections = std::stoi(value);
        else if (key == "--failure-share")
            o.failure_share = std::stod(value);
        else if (key == "--database")
            o.database = value;
        else if (key == "--synchronous")
            o.synchronous = value;
        else if (key == "--message-size")
            o.message_size = std::stoul(value);
        else if (key == "--in-flight")
            o.in_flight = std::stoi(value);
        else if (key == "--embedded")
            o.embedded_config = value;
        else if (key == "--step-factor")
            o.step_factor = std::stod(value);
        else if (key == "--max-p99-ms")
            o.max_p99_ms = std::stod(value);
        else if (key == "--max-steps")
            o.max_steps = std::stoi(value);
        else if (key == "--refine-steps")
            o.refine_steps = std::stoi(value);
        else if (key == "--decision-runs")
            o.decision_runs = std::max(1, std::stoi(value));
        else
            throw std::runtime_error("unknown option " + key);
    }
    return o;
}

double Percentile(std::vector<double>& sorted, double p) {
    if (sorted.empty()) return 0;
    const auto index = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size()))) - 1;
    return sorted[std::min(index, sorted.size() - 1)];
}

// ---- ceiling -------------------------------------------------------------------------------------

// One "service" of the chain: its own connection and loop thread, consuming its queue; for each
// delivery it upserts a row (saga steps only), publishes the next hop, waits for the confirm, acks.
class ChainStage {
  public:
    ChainStage(const Options& o, const std::string& name, const std::string& queue, std::vector<std::string> exchanges,
               bool saga)
        : name_(name), saga_(saga) {
        loop_.loop().Invoke([&] {
            transport_ = std::make_unique<RabbitMqTransport>(loop_.loop(), o.rabbitmq, name);
            if (auto s = transport_->Start(); !s.ok()) throw std::runtime_error(s.message());
            messaging::Topology topology = messaging::QueueWithExchange(queue);
            for (const auto& exchange : exchanges) {
                topology.AddExchange(exchange);
                topology.BindExchange(exchange, queue);
            }
            transport_->Declare(topology);
            if (saga_) {
                db_ = std::make_unique<messaging::SqliteDatabase>(o.database, o.synchronous == "Full"
                                                                                  ? messaging::SqliteSync::kFull
                                                                                  : messaging::SqliteSync::kNormal);
                db_->Execute(
                    "CREATE TABLE IF NOT EXISTS chain (id TEXT PRIMARY KEY, step INTEGER NOT NULL, body TEXT NOT "
                    "NULL)");
            }
        });
        WaitUntilConnected(loop_.loop(), *transport_, o.rabbitmq.connection_timeout_seconds);
    }
    ~ChainStage() {
        loop_.loop().Invoke([&] {
            transport_.reset();
            db_.reset();
        });
    }
    // `next` maps the hop a message arrived on to the exchange of the following hop ("" = end).
    void Start(const std::string& queue, std::function<std::string(int)> next,
               std::function<void(const std::string&)> on_end) {
        loop_.loop().Invoke([&] {
            transport_->Consume(queue, 256, [this, next, on_end](messaging::Delivery delivery) {
                const int hop = std::stoi(messaging::HeaderToString(delivery.message.properties.headers.at("hop")));
                const std::string id = delivery.message.properties.message_id;
                if (saga_) {
                    db_->Prepare(
                           "INSERT INTO chain (id, step, body) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET step "
                           "= excluded.step, body = excluded.body")
                        .Bind(1, id)
                        .Bind(2, hop)
                        .Bind(3, std::string_view(delivery.message.body).substr(0, 200))
                        .Run();
                }
                const std::string exchange = next(hop);
                if (exchange.empty()) {
                    on_end(id);
                    transport_->Ack(delivery);
                    return;
                }
                messaging::TransportMessage out = delivery.message;
                out.properties.headers["hop"] = static_cast<std::int32_t>(hop + 1);
                transport_->Publish(exchange, std::move(out), [this, delivery](const messaging::Status& status) {
                    if (status.ok())
                        transport_->Ack(delivery);
                    else
                        transport_->Nack(delivery, true);
                });
            });
        });
    }
    messaging::EventLoop& loop() { return loop_.loop(); }
    RabbitMqTransport& transport() { return *transport_; }

  private:
    std::string name_;
    bool saga_;
    EventLoopThread loop_;
    std::unique_ptr<RabbitMqTransport> transport_;
    std::unique_ptr<messaging::SqliteDatabase> db_;
};

// The four stages of the chain, wired: hops 1 OrderSubmitted -> order, 2 CheckInventory -> inventory,
// 3 StockReserved -> order, 4 ProcessPayment -> payment, 5 PaymentAccepted -> order, 6 OrderCompleted ->
// the generator, which calls `on_end` with the chain's message id.
struct Chain {
    Chain(const Options& o, std::function<void(const std::string&)> on_end)
        : order(o, "chain-order", "chain-order", {"chain-1", "chain-3", "chain-5"}, true),
          inventory(o, "chain-inventory", "chain-inventory", {"chain-2"}, false),
          payment(o, "chain-payment", "chain-payment", {"chain-4"}, false),
          generator(o, "chain-generator", "chain-generator", {"chain-6"}, false),
          body(o.message_size, 'x') {
        order.Start(
            "chain-order", [](int hop) { return "chain-" + std::to_string(hop + 1); }, nullptr);
        inventory.Start(
            "chain-inventory", [](int) { return std::string("chain-3"); }, nullptr);
        payment.Start(
            "chain-payment", [](int) { return std::string("chain-5"); }, nullptr);
        generator.Start(
            "chain-generator", [](int) { return std::string(); }, std::move(on_end));
    }
    // Starts one chain; on the generator's loop thread.
    void Launch(const std::string& id) {
        messaging::TransportMessage message;
        message.body = body;
        message.properties.content_type = messaging::kEnvelopeContentType;
        message.properties.message_id = id;
        message.properties.headers["hop"] = std::int32_t{1};
        generator.transport().Publish("chain-1", std::move(message), [](const messaging::Status&) {});
    }
    ChainStage order, inventory, payment, generator;
    std::string body;
};

// The ceiling: `in_flight` chains kept going (each completion starts the next) for o.seconds.
int Ceiling(const Options& o) {
    std::remove(o.database.c_str());
    std::atomic<std::int64_t> completed{0}, launched{0};
    std::atomic<bool> running{true};
    // Chains an earlier run left in the queues of the same vhost reach the generator as soon as it
    // consumes, before `chain` is even assigned: only this run's chains are counted and relaunched.
    const std::string prefix = "ceiling-" + std::to_string(::getpid()) + "-";
    std::unique_ptr<Chain> chain;
    auto launch = [&] {  // on the generator's loop thread
        ++launched;
        chain->Launch(prefix + contracts::Guid::New().ToString());
    };
    chain = std::make_unique<Chain>(o, [&](const std::string& id) {
        if (id.rfind(prefix, 0) != 0) return;
        ++completed;
        if (running) launch();
    });
    const auto start = steady_clock::now();
    const auto deadline = start + duration<double>(o.seconds);
    chain->generator.loop().Invoke([&] {
        for (int i = 0; i < o.in_flight; ++i) launch();
    });
    std::this_thread::sleep_until(deadline);  // a benchmark's measuring window, not test synchronisation
    const double elapsed = duration<double>(steady_clock::now() - start).count();
    running = false;
    const auto chains = completed.load();
    // The callbacks run on the generator's loop thread: once this returns, none is inside
    // `chain->Launch`, and the later ones see `running` false, so `chain` can go.
    chain->generator.loop().Invoke([] {});
    // Let the chains in flight finish, so that the next measurement in this vhost starts with empty queues.
    for (const auto drained_by = steady_clock::now() + seconds(10);
         completed.load() < launched.load() && steady_clock::now() < drained_by;)
        std::this_thread::sleep_for(milliseconds(10));  // a benchmark's drain poll, not test synchronisation
    OrderedJson result;
    result["mode"] = "ceiling";
    result["synchronous"] = o.synchronous;
    result["message_size"] = o.message_size;
    result["in_flight"] = o.in_flight;
    result["seconds"] = elapsed;
    result["chains"] = chains;
    result["chains_per_second"] = static_cast<double>(chains) / elapsed;
    std::cout << result.dump() << std::endl;
    chain.reset();
    return 0;
}

// The broker's own latency floor: chains started open-loop at o.rate for o.seconds, each timed from
// its scheduled start to its last hop. The system cannot be faster than this at the same rate.
int ChainLatency(const Options& o) {
    std::remove(o.database.c_str());
    const auto total = static_cast<std::int64_t>(o.rate * o.seconds);
    std::vector<steady_clock::time_point> scheduled(static_cast<std::size_t>(total));
    std::vector<steady_clock::time_point> ended(static_cast<std::size_t>(total));
    std::atomic<std::int64_t> completed{0};
    std::mutex mutex;
    std::condition_variable all_done;
    const std::string prefix = "latency-" + std::to_string(::getpid()) + "-";
    Chain chain(o, [&](const std::string& id) {
        // Chains of an earlier run in the same vhost (the ceiling's last ones) may still arrive.
        if (id.rfind(prefix, 0) != 0) return;
        std::size_t index = 0;
        const char* digits = id.data() + prefix.size();
        if (std::from_chars(digits, id.data() + id.size(), index).ec != std::errc() ||
            index >= static_cast<std::size_t>(total))
            return;
        ended[index] = steady_clock::now();
        if (++completed == total) {
            std::lock_guard lock(mutex);
            all_done.notify_all();
        }
    });
    const auto start = steady_clock::now() + milliseconds(100);
    for (std::int64_t i = 0; i < total; ++i) {
        const auto due =
            start + duration_cast<steady_clock::duration>(duration<double>(static_cast<double>(i) / o.rate));
        std::this_thread::sleep_until(due);  // open loop: each chain has its own start time
        scheduled[static_cast<std::size_t>(i)] = due;
        chain.generator.loop().Post([&chain, &prefix, i] { chain.Launch(prefix + std::to_string(i)); });
    }
    {
        std::unique_lock lock(mutex);
        all_done.wait_for(lock, seconds(60), [&] { return completed.load() >= total; });
    }
    std::vector<double> latencies;
    for (std::int64_t i = 0; i < total; ++i)
        if (ended[static_cast<std::size_t>(i)] != steady_clock::time_point{})
            latencies.push_back(duration<double, std::milli>(ended[static_cast<std::size_t>(i)] -
                                                             scheduled[static_cast<std::size_t>(i)])
                                    .count());
    std::sort(latencies.begin(), latencies.end());
    OrderedJson result;
    result["mode"] = "chain";
    result["synchronous"] = o.synchronous;
    result["offered_rate"] = o.rate;
    result["chains"] = total;
    result["completed"] = static_cast<std::int64_t>(latencies.size());
    result["latency_ms"] = {{"p50", Percentile(latencies, 50)},
                            {"p95", Percentile(latencies, 95)},
                            {"p99", Percentile(latencies, 99)},
                            {"max", latencies.empty() ? 0.0 : latencies.back()}};
    std::cout << result.dump() << std::endl;
    return 0;
}

// ---- load ----------------------------------------------------------------------------------------

// The final events seen, by order id; filled on the outcome consumer's loop thread.
struct Outcomes {
    struct Outcome {
        steady_clock::time_point at;
        std::set<std::string> message_ids;
        std::string status;
    };
    std::mutex mutex;
    std::map<std::string, Outcome> by_order;

    void Record(const messaging::Delivery& delivery) {
        const auto now = steady_clock::now();
        try {
            const auto envelope = messaging::ParseEnvelope(delivery.message.body);
            const std::string id = envelope.message.at("orderId");
            std::lock_guard lock(mutex);
            auto& outcome = by_order[id];
            if (outcome.message_ids.empty()) outcome.at = now;
            outcome.message_ids.insert(envelope.message_id);
            outcome.status =
                envelope.message_type.front().find("OrderCompleted") != std::string::npos ? "Completed" : "Failed";
        } catch (const std::exception&) {
        }
    }
};

// Declares a queue of our own bound to OrderCompleted and OrderFailed and records what arrives.
void ConsumeOutcomes(messaging::Transport& transport, Outcomes& outcomes) {
    const std::string queue = "bench-outcomes-" + std::to_string(::getpid());
    messaging::Topology topology;
    topology.queues.push_back(
        messaging::QueueSpec{.name = queue, .durable = false, .exclusive = false, .auto_delete = true});
    for (const char* exchange : {"Contracts:OrderCompleted", "Contracts:OrderFailed"}) {
        topology.AddExchange(exchange);
        topology.BindQueue(exchange, queue);
    }
    transport.Declare(topology);
    transport.Consume(queue, 512, [&transport, &outcomes](messaging::Delivery delivery) {
        outcomes.Record(delivery);
        transport.Ack(delivery);
    });
}

// One open-loop step at `rate` orders/s for o.seconds; returns its figures.
OrderedJson RunStep(const Options& o, double rate, int step, Outcomes& outcomes) {
    const auto total = static_cast<std::int64_t>(rate * o.seconds);
    const std::string run = std::to_string(::getpid()) + "-" +
                            std::to_string(steady_clock::now().time_since_epoch().count() % 100000) + "-" +
                            std::to_string(step);
    std::vector<bench::PostedOrder> orders(static_cast<std::size_t>(total));
    const auto start = steady_clock::now() + milliseconds(100);
    for (std::int64_t i = 0; i < total; ++i) {
        // The mix: by default every order succeeds (ids end in 3); optionally shortages (0) and declines (1).
        char last = '3';
        if (o.failure_share > 0) {
            const double slot = std::fmod(static_cast<double>(i) * 0.6180339887, 1.0);
            last = slot < o.failure_share ? '0' : slot < 2 * o.failure_share ? '1' : '3';
        }
        auto& order = orders[static_cast<std::size_t>(i)];
        order.id = "b" + run + "-" + std::to_string(i) + last;
        order.body =
            R"({"orderId":")" + order.id +
            R"(","customerNumber":"BENCH","totalAmount":"49.90","items":[{"sku":"SKU-1","quantity":2,"unitPrice":"24.95"}]})";
        // Open loop: each order has its own send time.
        order.due = start + duration_cast<steady_clock::duration>(duration<double>(static_cast<double>(i) / rate));
    }
    rusage usage_before{};
    getrusage(RUSAGE_SELF, &usage_before);
    bench::PostOrders(o.http_host, o.http_port, o.connections, orders);
    const auto sent_done = steady_clock::now();
    std::int64_t accepted = 0;
    for (const auto& order : orders) accepted += order.status == 202;
    // Wait for the outcomes of every accepted order (at most 60 s after the last send).
    const auto drain_deadline = sent_done + seconds(60);
    for (;;) {
        std::size_t finished = 0;
        {
            std::lock_guard lock(outcomes.mutex);
            for (const auto& order : orders)
                if (order.status == 202 && outcomes.by_order.count(order.id)) ++finished;
        }
        if (static_cast<std::int64_t>(finished) >= accepted || steady_clock::now() > drain_deadline) break;
        std::this_thread::sleep_for(milliseconds(50));  // a benchmark's drain poll, not test synchronisation
    }

    std::vector<double> latencies, accept_latencies, send_lags;
    std::int64_t lost = 0, duplicated = 0, completed = 0, failed = 0;
    steady_clock::time_point last_outcome = start;
    {
        std::lock_guard lock(outcomes.mutex);
        for (const auto& order : orders) {
            if (order.sent != steady_clock::time_point{})
                send_lags.push_back(duration<double, std::milli>(order.sent - order.due).count());
            if (order.status != 202) continue;
            accept_latencies.push_back(duration<double, std::milli>(order.answered - order.due).count());
            auto it = outcomes.by_order.find(order.id);
            if (it == outcomes.by_order.end()) {
                ++lost;
                continue;
            }
            if (it->second.message_ids.size() > 1) ++duplicated;
            (it->second.status == "Completed" ? completed : failed)++;
            latencies.push_back(duration<double, std::milli>(it->second.at - order.due).count());
            last_outcome = std::max(last_outcome, it->second.at);
        }
        // This step's orders are counted: forget them, or the tool's own memory grows step by step
        // (and, embedded, is reported as the system's RSS).
        for (const auto& order : orders) outcomes.by_order.erase(order.id);
    }
    std::sort(latencies.begin(), latencies.end());
    std::sort(accept_latencies.begin(), accept_latencies.end());
    std::sort(send_lags.begin(), send_lags.end());
    const double window = duration<double>(last_outcome - start).count();
    OrderedJson result;
    result["mode"] = o.mode;
    result["embedded"] = !o.embedded_config.empty();
    result["offered_rate"] = rate;
    result["seconds"] = o.seconds;
    result["orders"] = total;
    result["accepted"] = accepted;
    result["rejected"] = total - accepted;
    result["completed"] = completed;
    result["failed"] = failed;
    result["lost"] = lost;
    result["duplicated"] = duplicated;
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds_of = [](const rusage& u) {
        return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
               static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
    };
    // Embedded, this is the whole system's CPU (services and generator share the process).
    result["cpu_seconds"] = seconds_of(usage) - seconds_of(usage_before);
    result["peak_rss_mb"] = static_cast<double>(usage.ru_maxrss) / 1024.0;
    result["throughput"] = window > 0 ? static_cast<double>(completed + failed) / window : 0.0;
    result["latency_ms"] = {{"p50", Percentile(latencies, 50)},
                            {"p95", Percentile(latencies, 95)},
                            {"p99", Percentile(latencies, 99)},
                            {"max", latencies.empty() ? 0.0 : latencies.back()}};
    // From the scheduled send to the 202 answer: the HTTP path and the first commit.
    result["accepted_latency_ms"] = {{"p50", Percentile(accept_latencies, 50)},
                                     {"p99", Percentile(accept_latencies, 99)}};
    // How late the generator itself sent the orders (no idle connection, or its own loop was late):
    // part of every latency above, since they are measured from the scheduled send.
    result["send_lag_ms"] = {{"p50", Percentile(send_lags, 50)}, {"p99", Percentile(send_lags, 99)}};
    return result;
}

// The three services on the in-memory bus inside this process (as `OrderService --in-memory`), their
// settings from `config_dir` and the environment, their databases in a directory of their own.
// The three services in this process on the in-memory bus, with databases in a scratch directory.
std::unique_ptr<embedded::EmbeddedSystem> MakeEmbeddedSystem(messaging::EventLoop& loop, const Options& o) {
    const std::filesystem::path data =
        std::filesystem::temp_directory_path() / ("saga-bench-embedded-" + std::to_string(::getpid()));
    std::filesystem::create_directories(data);
    auto settings = embedded::EmbeddedSettings::Load(o.embedded_config, messaging::ProcessEnvironment());
    settings.orders.database.path = (data / "orders.db").string();
    settings.inventory.database.path = (data / "inventory.db").string();
    settings.payment.database.path = (data / "payments.db").string();
    settings.orders.http.port = o.http_port;
    auto system = std::make_unique<embedded::EmbeddedSystem>(loop, std::move(settings));
    if (auto status = system->Start(); !status.ok()) throw std::runtime_error(status.message());
    return system;
}

// `load`: one step at --rate. `max`: steps from --rate upward by --step-factor until the system falls
// behind (sustains less than 95% of the offered rate, or its p99 passes --max-p99-ms), then
// --refine-steps steps between the last rate it kept up with and that one; prints every step and the
// highest rate it kept up with. With --decision-runs N, each rate runs until a majority of N runs
// agree on whether the system kept up with it.
int Load(const Options& o) {
    Outcomes outcomes;
    EventLoopThread loop;
    std::unique_ptr<RabbitMqTransport> rabbitmq;
    std::unique_ptr<embedded::EmbeddedSystem> in_process;
    loop.loop().Invoke([&] {
        if (!o.embedded_config.empty()) {
            in_process = MakeEmbeddedSystem(loop.loop(), o);
            ConsumeOutcomes(in_process->transport(), outcomes);
        } else {
            rabbitmq = std::make_unique<RabbitMqTransport>(loop.loop(), o.rabbitmq, "bench-load");
            if (auto s = rabbitmq->Start(); !s.ok()) throw std::runtime_error(s.message());
            ConsumeOutcomes(*rabbitmq, outcomes);
        }
    });
    if (rabbitmq) WaitUntilConnected(loop.loop(), *rabbitmq, o.rabbitmq.connection_timeout_seconds);
    if (in_process) in_process->StartHttp();

    if (o.mode == "load") {
        std::cout << RunStep(o, o.rate, 0, outcomes).dump() << std::endl;
    } else {
        OrderedJson steps = OrderedJson::array();
        int step = 0;
        // One run's verdict on a shared machine is a draw: a stall elsewhere can fail a rate the system
        // keeps up with, or a quiet moment pass one it does not. The majority of runs decides.
        const int majority = o.decision_runs / 2 + 1;
        auto kept_up_with = [&](double rate) {
            int passed = 0, failed = 0;
            while (passed < majority && failed < majority) {
                OrderedJson result = RunStep(o, rate, step++, outcomes);
                const bool kept_up = result["throughput"].get<double>() >= 0.95 * rate &&
                                     result["latency_ms"]["p99"].get<double>() <= o.max_p99_ms &&
                                     result["lost"].get<std::int64_t>() == 0;
                std::cerr << "  offered " << rate << "/s: sustained " << result["throughput"].get<double>()
                          << "/s, p99 " << result["latency_ms"]["p99"].get<double>() << " ms"
                          << (kept_up ? "" : " (fell behind)") << std::endl;
                result["kept_up"] = kept_up;
                steps.push_back(std::move(result));
                ++(kept_up ? passed : failed);
            }
            return passed >= majority;
        };
        double best = 0;
        double fell_behind_at = 0;
        int rates_tried = 0;
        for (double rate = o.rate; rates_tried++ < o.max_steps; rate *= o.step_factor) {
            if (!kept_up_with(rate)) {
                fell_behind_at = rate;
                break;
            }
            best = rate;
        }
        // Steps of +15% alone can understate the maximum by as much: halve the last gap (geometrically)
        // a few times. Each step starts with nothing in flight (RunStep drains the one before).
        double low = best;
        double high = fell_behind_at;
        for (int i = 0; i < o.refine_steps && low > 0 && high > 0; ++i) {
            const double middle = std::sqrt(low * high);
            if (kept_up_with(middle))
                low = best = middle;
            else
                high = middle;
        }
        OrderedJson summary;
        summary["mode"] = "max";
        summary["embedded"] = !o.embedded_config.empty();
        summary["maximum_rate"] = best;
        summary["decision_runs"] = o.decision_runs;
        summary["steps"] = std::move(steps);
        std::cout << summary.dump() << std::endl;
    }
    loop.loop().Invoke([&] {
        if (in_process) in_process->orders().Stop(nullptr);
        rabbitmq.reset();
    });
    if (in_process) loop.loop().Invoke([&] { in_process.reset(); });
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        spdlog::set_level(spdlog::level::warn);
        const Options options = Parse(argc, argv);
        if (options.mode == "ceiling") return Ceiling(options);
        if (options.mode == "chain") return ChainLatency(options);
        if (options.mode == "load" || options.mode == "max") return Load(options);
        throw std::runtime_error("mode must be ceiling, load or max");
    } catch (const std::exception& e) {
        std::cerr << "SagaBench: " << e.what() << std::endl;
        return 2;
    }
}
