// Reading Prometheus' text format in the tests: the sum of the samples of a metric whose labels
// include the given ones, and the metric names with their types.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace test_support {

// The sum of the values of `name`'s samples that carry every one of `labels` (name, value); 0 when
// none does.
double SampleSum(const std::string& text, const std::string& name,
                 const std::vector<std::pair<std::string, std::string>>& labels = {});
// How many samples of `name` carry every one of `labels`.
int SampleCount(const std::string& text, const std::string& name,
                const std::vector<std::pair<std::string, std::string>>& labels = {});
// Each metric's type, from its `# TYPE` line.
std::map<std::string, std::string> MetricTypes(const std::string& text);

}  // namespace test_support
