// The metrics differential test's machinery: a scrape of MassTransit's meter (the twin's, through
// OpenTelemetry's Prometheus exporter, or ours) reduced to what a dashboard depends on: each
// messaging_masstransit_* metric's type, label names and bucket bounds, and the counts of each series
// but for the service label, whose value is the process name. Differences are named line by line;
// the ones we accept, with their reasons, are listed in AcceptedMetricDifferences().
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

namespace twin_test {

struct MetricsShape {
    std::map<std::string, std::string> types;                    // metric -> counter, histogram, ...
    std::map<std::string, std::set<std::string>> label_names;    // metric -> its label names but le
    std::map<std::string, std::set<std::string>> bucket_bounds;  // histogram -> its le values
    std::map<std::string, double> counts;  // "metric{label=value,...}" (no service, no le) -> value;
                                           // a histogram's count under its own name
};

// The messaging_masstransit_* metrics of a scrape.
MetricsShape ReadMetricsShape(const std::string& text);

// Every difference between the twin's shape and ours, one line each, but for the accepted ones.
std::vector<std::string> CompareMetrics(const MetricsShape& twin, const MetricsShape& ours);

// The differences we accept, each with its reason: substrings of CompareMetrics' lines.
const std::map<std::string, std::string>& AcceptedMetricDifferences();

}  // namespace twin_test
