#include "MassTransitTwin/MetricsDiff.h"

#include <sstream>
#include <utility>

namespace twin_test {

namespace {

constexpr const char* kPrefix = "messaging_masstransit_";

// "a=\"x\",b=\"y\"" -> {{a, x}, {b, y}}; values are unescaped.
std::vector<std::pair<std::string, std::string>> ParseLabels(const std::string& text) {
    std::vector<std::pair<std::string, std::string>> labels;
    std::size_t i = 0;
    while (i < text.size()) {
        const auto equals = text.find('=', i);
        if (equals == std::string::npos || equals + 1 >= text.size() || text[equals + 1] != '"') break;
        std::string name = text.substr(i, equals - i);
        std::string value;
        std::size_t j = equals + 2;
        for (; j < text.size() && text[j] != '"'; ++j) {
            if (text[j] == '\\' && j + 1 < text.size()) {
                ++j;
                value.push_back(text[j] == 'n' ? '\n' : text[j]);
            } else {
                value.push_back(text[j]);
            }
        }
        labels.emplace_back(std::move(name), std::move(value));
        i = j + 1;
        if (i < text.size() && text[i] == ',') ++i;
    }
    return labels;
}

// The histogram a sample of it belongs to, or the name itself.
std::string FamilyOf(const std::string& name, const std::map<std::string, std::string>& types, std::string& part) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        const std::string s = suffix;
        if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
            const std::string base = name.substr(0, name.size() - s.size());
            if (auto it = types.find(base); it != types.end() && it->second == "histogram") {
                part = s;
                return base;
            }
        }
    }
    part.clear();
    return name;
}

std::string Join(const std::set<std::string>& values) {
    std::string out;
    for (const auto& value : values) out += (out.empty() ? "" : ",") + value;
    return out;
}

std::string Number(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

}  // namespace

MetricsShape ReadMetricsShape(const std::string& text) {
    MetricsShape shape;
    std::istringstream lines(text);
    std::string line;
    std::vector<std::string> samples;
    while (std::getline(lines, line)) {
        if (line.rfind("# TYPE ", 0) == 0) {
            std::istringstream words(line.substr(7));
            std::string name, type;
            words >> name >> type;
            if (name.rfind(kPrefix, 0) == 0) shape.types[name] = type;
        } else if (!line.empty() && line[0] != '#') {
            samples.push_back(line);
        }
    }
    for (const auto& sample : samples) {
        const auto open = sample.find('{');
        const auto close = sample.rfind('}');
        const auto space = sample.rfind(' ');
        const std::string name = sample.substr(0, open == std::string::npos ? space : open);
        if (name.rfind(kPrefix, 0) != 0) continue;
        std::string part;
        const std::string family = FamilyOf(name, shape.types, part);
        const auto labels = open == std::string::npos ? decltype(ParseLabels("")){}
                                                      : ParseLabels(sample.substr(open + 1, close - open - 1));
        std::string key = family + "{";
        bool first = true;
        for (const auto& [label, value] : labels) {
            if (label == "le") {
                shape.bucket_bounds[family].insert(value);
                continue;
            }
            shape.label_names[family].insert(label);
            if (label == "messaging_masstransit_service") continue;
            key += (first ? "" : ",") + label + "=" + value;
            first = false;
        }
        key += "}";
        if (part.empty() || part == "_count") shape.counts[key] += std::stod(sample.substr(space + 1));
    }
    return shape;
}

std::vector<std::string> CompareMetrics(const MetricsShape& twin, const MetricsShape& ours) {
    std::vector<std::string> lines;
    auto note = [&](const std::string& line) {
        for (const auto& [accepted, reason] : AcceptedMetricDifferences())
            if (line.find(accepted) != std::string::npos) return;
        lines.push_back(line);
    };
    for (const auto& [name, type] : twin.types) {
        auto it = ours.types.find(name);
        if (it == ours.types.end())
            note("missing in ours: " + name + " (" + type + ")");
        else if (it->second != type)
            note("type of " + name + ": twin " + type + ", ours " + it->second);
    }
    for (const auto& [name, type] : ours.types)
        if (!twin.types.count(name)) note("only in ours: " + name + " (" + type + ")");
    for (const auto& [name, labels] : twin.label_names)
        if (auto it = ours.label_names.find(name); it != ours.label_names.end() && it->second != labels)
            note("labels of " + name + ": twin " + Join(labels) + ", ours " + Join(it->second));
    for (const auto& [name, bounds] : twin.bucket_bounds)
        if (auto it = ours.bucket_bounds.find(name); it != ours.bucket_bounds.end() && it->second != bounds)
            note("buckets of " + name + ": twin " + Join(bounds) + ", ours " + Join(it->second));
    for (const auto& [key, value] : twin.counts) {
        auto it = ours.counts.find(key);
        const double mine = it == ours.counts.end() ? 0 : it->second;
        if (mine != value) note("count of " + key + ": twin " + Number(value) + ", ours " + Number(mine));
    }
    for (const auto& [key, value] : ours.counts)
        if (!twin.counts.count(key) && value != 0) note("count of " + key + ": twin 0, ours " + Number(value));
    return lines;
}

const std::map<std::string, std::string>& AcceptedMetricDifferences() {
    static const std::map<std::string, std::string> kAccepted = {};
    return kAccepted;
}

}  // namespace twin_test
