// The metrics registry and Prometheus' text format: help and type lines, label order and escaping,
// cumulative histogram buckets, type conflicts, and the process figures read from /proc.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>

#include "Metrics/MetricsRegistry.h"
#include "Metrics/ProcessMetrics.h"
#include "Support/MetricsText.h"

using namespace metrics;
using test_support::SampleSum;

TEST_SUITE("Metrics") {
    TEST_CASE("A counter renders HELP and TYPE - then one line per series with its labels in order") {
        MetricsRegistry registry;
        auto& family = registry.CounterFamily("things_done_total", "Things done");
        family.With({{"b", "2"}, {"a", "1"}}).Add();
        family.With({{"b", "2"}, {"a", "1"}}).Add(2);
        family.With({{"b", "3"}, {"a", "1"}}).Add(0.5);
        CHECK(registry.Render() ==
              "# HELP things_done_total Things done\n"
              "# TYPE things_done_total counter\n"
              "things_done_total{b=\"2\",a=\"1\"} 3\n"
              "things_done_total{b=\"3\",a=\"1\"} 0.5\n");
    }

    TEST_CASE("Label values escape backslash and quote and line feed - help escapes backslash and line feed") {
        MetricsRegistry registry;
        registry.GaugeFamily("odd", "a \\ help\nline").With({{"v", "a\"b\\c\nd"}}).Set(-1.25);
        CHECK(registry.Render() ==
              "# HELP odd a \\\\ help\\nline\n"
              "# TYPE odd gauge\n"
              "odd{v=\"a\\\"b\\\\c\\nd\"} -1.25\n");
    }

    TEST_CASE("A histogram renders cumulative buckets with le - +Inf equal to _count - and _sum") {
        MetricsRegistry registry;
        auto& histogram = registry.HistogramFamily("wait_ms", "Waits", {0, 5, 10}).With({{"q", "x"}});
        for (double value : {0.0, 3.0, 5.0, 7.5, 11.0, 1000.0}) histogram.Observe(value);
        CHECK(registry.Render() ==
              "# HELP wait_ms Waits\n"
              "# TYPE wait_ms histogram\n"
              "wait_ms_bucket{q=\"x\",le=\"0\"} 1\n"
              "wait_ms_bucket{q=\"x\",le=\"5\"} 3\n"
              "wait_ms_bucket{q=\"x\",le=\"10\"} 4\n"
              "wait_ms_bucket{q=\"x\",le=\"+Inf\"} 6\n"
              "wait_ms_sum{q=\"x\"} 1026.5\n"
              "wait_ms_count{q=\"x\"} 6\n");
    }

    TEST_CASE("OpenTelemetry's default buckets: 0 to 10000 in fifteen bounds") {
        CHECK(DefaultBuckets() ==
              std::vector<double>{0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000});
    }

    TEST_CASE("A family without series is not rendered - asking again gives the same family") {
        MetricsRegistry registry;
        auto& first = registry.CounterFamily("a_total", "A");
        CHECK(&registry.CounterFamily("a_total", "A") == &first);
        CHECK(registry.Render().empty());
        CHECK_THROWS_AS(registry.GaugeFamily("a_total", "A"), std::logic_error);
        CHECK_THROWS_AS(registry.HistogramFamily("h", "H", {5, 1}), std::logic_error);
    }

    TEST_CASE("A collector runs before each rendering") {
        MetricsRegistry registry;
        Gauge& gauge = registry.GaugeFamily("depth", "Depth").With({});
        int calls = 0;
        registry.AddCollector([&] { gauge.Set(++calls * 10); });
        CHECK(SampleSum(registry.Render(), "depth") == 10);
        CHECK(SampleSum(registry.Render(), "depth") == 20);
    }

    TEST_CASE("Process figures: memory and descriptors and start time and CPU are read from /proc") {
        MetricsRegistry registry;
        AddProcessMetrics(registry);
        const std::string before = registry.Render();
        CHECK(SampleSum(before, "process_resident_memory_bytes") > 1024 * 1024);
        CHECK(SampleSum(before, "process_virtual_memory_bytes") >= SampleSum(before, "process_resident_memory_bytes"));
        CHECK(SampleSum(before, "process_max_fds") > 0);
        const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        const double started = SampleSum(before, "process_start_time_seconds");
        CHECK(started <= now + 1);
        CHECK(started > now - 24 * 3600);
        // Two descriptors more are seen at the next scrape.
        const int a = open("/dev/null", O_RDONLY);
        const int b = open("/dev/null", O_RDONLY);
        const std::string after = registry.Render();
        close(a);
        close(b);
        CHECK(SampleSum(after, "process_open_fds") == SampleSum(before, "process_open_fds") + 2);
        // CPU time only grows: burn some and read it again.
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
        volatile unsigned spin = 0;
        while (std::chrono::steady_clock::now() < until) spin = spin + 1;
        CHECK(SampleSum(registry.Render(), "process_cpu_seconds_total") >
              SampleSum(before, "process_cpu_seconds_total"));
    }
}
