#include "Metrics/MetricsRegistry.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace metrics {

namespace {

// Prometheus' text format escapes a label value's backslash, double quote and line feed, and a help
// text's backslash and line feed.
void AppendEscaped(std::string& out, const std::string& text, bool quotes) {
    for (char c : text) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '\n')
            out += "\\n";
        else if (c == '"' && quotes)
            out += "\\\"";
        else
            out.push_back(c);
    }
}

void AppendNumber(std::string& out, double value) {
    if (std::isnan(value)) {
        out += "NaN";
    } else if (std::isinf(value)) {
        out += value > 0 ? "+Inf" : "-Inf";
    } else if (value == std::floor(value) && std::fabs(value) < 1e15) {
        out += std::to_string(static_cast<long long>(value));
    } else {
        // The shortest text that reads back as the same double.
        char buffer[32];
        const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
        out.append(buffer, result.ptr);
    }
}

void AppendLabels(std::string& out, const Labels& labels, const std::pair<std::string, std::string>* extra = nullptr) {
    if (labels.empty() && !extra) return;
    out.push_back('{');
    bool first = true;
    auto append = [&](const std::string& name, const std::string& value) {
        if (!first) out.push_back(',');
        first = false;
        out += name;
        out += "=\"";
        AppendEscaped(out, value, /*quotes=*/true);
        out.push_back('"');
    };
    for (const auto& [name, value] : labels) append(name, value);
    if (extra) append(extra->first, extra->second);
    out.push_back('}');
}

void AppendHeader(std::string& out, const std::string& name, const std::string& help, const char* type) {
    out += "# HELP ";
    out += name;
    out.push_back(' ');
    AppendEscaped(out, help, /*quotes=*/false);
    out += "\n# TYPE ";
    out += name;
    out.push_back(' ');
    out += type;
    out.push_back('\n');
}

}  // namespace

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), buckets_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds.size() + 1)) {}

void Histogram::Observe(double value) {
    // The first bound the value does not exceed; past the last, the +Inf bucket.
    const auto index =
        static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
    buckets_[index].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(value, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
    Snapshot snapshot;
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += buckets_[i].load(std::memory_order_relaxed);
        snapshot.cumulative.push_back(running);
    }
    snapshot.sum = sum_.load(std::memory_order_relaxed);
    // The +Inf bucket is the count, so that the two never disagree in one rendering.
    snapshot.count = running;
    return snapshot;
}

template <class Series>
Series& Family<Series>::With(const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto it = series_.find(labels);
    if (it == series_.end()) it = series_.emplace(labels, make_()).first;
    return *it->second;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

MetricsRegistry::Entry& MetricsRegistry::Find(const std::string& name, MetricType type) {
    for (auto& [existing, entry] : families_) {
        if (existing != name) continue;
        if (entry.type != type) throw std::logic_error("metric " + name + " is registered with another type");
        return entry;
    }
    Entry entry;
    entry.type = type;
    families_.emplace_back(name, std::move(entry));
    return families_.back().second;
}

Family<Counter>& MetricsRegistry::CounterFamily(const std::string& name, const std::string& help) {
    std::lock_guard lock(mutex_);
    Entry& entry = Find(name, MetricType::kCounter);
    if (!entry.counters)
        entry.counters.reset(
            new Family<Counter>(name, help, MetricType::kCounter, [] { return std::make_unique<Counter>(); }));
    return *entry.counters;
}

Family<Gauge>& MetricsRegistry::GaugeFamily(const std::string& name, const std::string& help) {
    std::lock_guard lock(mutex_);
    Entry& entry = Find(name, MetricType::kGauge);
    if (!entry.gauges)
        entry.gauges.reset(new Family<Gauge>(name, help, MetricType::kGauge, [] { return std::make_unique<Gauge>(); }));
    return *entry.gauges;
}

Family<Histogram>& MetricsRegistry::HistogramFamily(const std::string& name, const std::string& help,
                                                    std::vector<double> bounds) {
    std::lock_guard lock(mutex_);
    Entry& entry = Find(name, MetricType::kHistogram);
    if (!entry.histograms) {
        if (!std::is_sorted(bounds.begin(), bounds.end()))
            throw std::logic_error("histogram " + name + " has bucket bounds out of order");
        entry.bounds = std::make_unique<std::vector<double>>(std::move(bounds));
        const std::vector<double>* kept = entry.bounds.get();
        entry.histograms.reset(new Family<Histogram>(name, help, MetricType::kHistogram,
                                                     [kept] { return std::make_unique<Histogram>(*kept); }));
    }
    return *entry.histograms;
}

void MetricsRegistry::AddCollector(std::function<void()> collect) {
    std::lock_guard lock(mutex_);
    collectors_.push_back(std::move(collect));
}

template <class Series>
void MetricsRegistry::RenderValues(std::string& out, const std::string& name, const Family<Series>& family,
                                   const char* type) {
    std::lock_guard series_lock(family.mutex_);
    if (family.series_.empty()) return;
    AppendHeader(out, name, family.help_, type);
    for (const auto& [labels, series] : family.series_) {
        out += name;
        AppendLabels(out, labels);
        out.push_back(' ');
        AppendNumber(out, series->value());
        out.push_back('\n');
    }
}

std::string MetricsRegistry::Render() const {
    std::vector<std::function<void()>> collectors;
    {
        std::lock_guard lock(mutex_);
        collectors = collectors_;
    }
    for (const auto& collect : collectors) collect();

    std::string out;
    std::lock_guard lock(mutex_);
    for (const auto& [name, entry] : families_) {
        if (entry.counters) {
            RenderValues(out, name, *entry.counters, "counter");
        } else if (entry.gauges) {
            RenderValues(out, name, *entry.gauges, "gauge");
        } else if (entry.histograms) {
            std::lock_guard series_lock(entry.histograms->mutex_);
            if (entry.histograms->series_.empty()) continue;
            AppendHeader(out, name, entry.histograms->help_, "histogram");
            const std::vector<double>& bounds = *entry.bounds;
            for (const auto& [labels, histogram] : entry.histograms->series_) {
                const Histogram::Snapshot snapshot = histogram->Read();
                for (std::size_t i = 0; i <= bounds.size(); ++i) {
                    std::string bound;
                    AppendNumber(bound, i < bounds.size() ? bounds[i] : INFINITY);
                    const std::pair<std::string, std::string> le{"le", bound};
                    out += name;
                    out += "_bucket";
                    AppendLabels(out, labels, &le);
                    out.push_back(' ');
                    out += std::to_string(snapshot.cumulative[i]);
                    out.push_back('\n');
                }
                out += name;
                out += "_sum";
                AppendLabels(out, labels);
                out.push_back(' ');
                AppendNumber(out, snapshot.sum);
                out.push_back('\n');
                out += name;
                out += "_count";
                AppendLabels(out, labels);
                out.push_back(' ');
                out += std::to_string(snapshot.count);
                out.push_back('\n');
            }
        }
    }
    return out;
}

const std::vector<double>& DefaultBuckets() {
    static const std::vector<double> kBounds{0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000};
    return kBounds;
}

}  // namespace metrics
