// Prometheus metrics: counters, gauges and histograms, each a family of series told apart by their
// label values, and a registry that renders them in Prometheus' text exposition format (0.0.4).
// Recording is thread-safe and cheap (one relaxed atomic add); finding a series takes the family's
// lock, so a hot path looks its series up once and keeps the reference, which stays valid for the
// registry's life.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace metrics {

// Label names and values, in the order they are written.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up (Add with a negative amount is a caller's choice: MassTransit's
// "active" instruments are counters it adds -1 to, and ours are written as it writes them).
class Counter {
  public:
    void Add(double amount = 1) { value_.fetch_add(amount, std::memory_order_relaxed); }
    // For a collector that reads a total kept elsewhere (the kernel's CPU time of the process).
    void SetTotal(double total) { value_.store(total, std::memory_order_relaxed); }
    double value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0};
};

// A value that is set, or goes up and down.
class Gauge {
  public:
    void Set(double value) { value_.store(value, std::memory_order_relaxed); }
    void Add(double amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
    double value() const { return value_.load(std::memory_order_relaxed); }

  private:
    std::atomic<double> value_{0};
};

// Observations counted into buckets by their upper bounds (each bucket counts what is at most its
// bound; the +Inf bucket is the count), with their sum.
class Histogram {
  public:
    explicit Histogram(const std::vector<double>& bounds);
    void Observe(double value);
    struct Snapshot {
        std::vector<std::uint64_t> cumulative;  // per bound, then +Inf
        double sum = 0;
        std::uint64_t count = 0;
    };
    Snapshot Read() const;

  private:
    const std::vector<double>& bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // per bound, then one past the last
    std::atomic<double> sum_{0};
    std::atomic<std::uint64_t> count_{0};
};

enum class MetricType { kCounter, kGauge, kHistogram };

// One metric name: its help text, type and series.
template <class Series>
class Family {
  public:
    // The series with these label values, created at first use.
    Series& With(const Labels& labels);
    const std::string& name() const { return name_; }

  private:
    friend class MetricsRegistry;
    Family(std::string name, std::string help, MetricType type, std::function<std::unique_ptr<Series>()> make)
        : name_(std::move(name)), help_(std::move(help)), type_(type), make_(std::move(make)) {}
    std::string name_;
    std::string help_;
    MetricType type_;
    std::function<std::unique_ptr<Series>()> make_;
    mutable std::mutex mutex_;
    std::map<Labels, std::unique_ptr<Series>> series_;
};

class MetricsRegistry {
  public:
    MetricsRegistry() = default;
    MetricsRegistry(const MetricsRegistry&) = delete;
    MetricsRegistry& operator=(const MetricsRegistry&) = delete;

    // The family of that name, created at first use; asking again returns the same one. A name
    // asked for with another type throws std::logic_error.
    Family<Counter>& CounterFamily(const std::string& name, const std::string& help);
    Family<Gauge>& GaugeFamily(const std::string& name, const std::string& help);
    Family<Histogram>& HistogramFamily(const std::string& name, const std::string& help, std::vector<double> bounds);

    // Runs before every rendering, to set the gauges read at scrape time (process figures, states).
    void AddCollector(std::function<void()> collect);

    // Every family with at least one series, in the order they were created, as Prometheus' text
    // format: `# HELP`, `# TYPE`, then a line per series (histograms: _bucket per bound, _sum, _count).
    std::string Render() const;

  private:
    struct Entry {
        MetricType type = MetricType::kCounter;
        std::unique_ptr<Family<Counter>> counters{};
        std::unique_ptr<Family<Gauge>> gauges{};
        std::unique_ptr<Family<Histogram>> histograms{};
        std::unique_ptr<std::vector<double>> bounds{};
    };
    Entry& Find(const std::string& name, MetricType type);
    // A counter's or gauge's lines: its header and a line per series; nothing without series.
    template <class Series>
    static void RenderValues(std::string& out, const std::string& name, const Family<Series>& family, const char* type);

    mutable std::mutex mutex_;
    std::vector<std::pair<std::string, Entry>> families_;
    std::vector<std::function<void()>> collectors_;
};

// The content type of Render()'s text.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4; charset=utf-8";

// OpenTelemetry's default histogram bucket bounds, as its SDK gives every histogram that names none
// (MassTransit's durations in milliseconds among them).
const std::vector<double>& DefaultBuckets();

}  // namespace metrics
