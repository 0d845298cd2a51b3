#include "Support/MetricsText.h"

#include <sstream>

namespace test_support {

namespace {

// Calls `visit(value)` for each sample line of `name` that carries every one of `labels`.
template <class Visit>
void ForEachSample(const std::string& text, const std::string& name,
                   const std::vector<std::pair<std::string, std::string>>& labels, Visit visit) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty() || line[0] == '#') continue;
        if (line.compare(0, name.size(), name) != 0) continue;
        const char next = line.size() > name.size() ? line[name.size()] : '\0';
        if (next != '{' && next != ' ') continue;
        const auto value_at = line.rfind(' ');
        const std::string label_text = line.substr(name.size(), value_at - name.size());
        bool all = true;
        for (const auto& [label, value] : labels)
            if (label_text.find(label + "=\"" + value + "\"") == std::string::npos) all = false;
        if (all) visit(std::stod(line.substr(value_at + 1)));
    }
}

}  // namespace

double SampleSum(const std::string& text, const std::string& name,
                 const std::vector<std::pair<std::string, std::string>>& labels) {
    double sum = 0;
    ForEachSample(text, name, labels, [&](double value) { sum += value; });
    return sum;
}

int SampleCount(const std::string& text, const std::string& name,
                const std::vector<std::pair<std::string, std::string>>& labels) {
    int count = 0;
    ForEachSample(text, name, labels, [&](double) { ++count; });
    return count;
}

std::map<std::string, std::string> MetricTypes(const std::string& text) {
    std::map<std::string, std::string> types;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("# TYPE ", 0) != 0) continue;
        std::istringstream words(line.substr(7));
        std::string name, type;
        words >> name >> type;
        types[name] = type;
    }
    return types;
}

}  // namespace test_support
