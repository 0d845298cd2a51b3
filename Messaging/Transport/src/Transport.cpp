#include "Transport/Transport.h"

#include <cstdlib>

#include "Contracts/JsonFields.h"

namespace messaging {

std::string HeaderToString(const HeaderValue& value) {
    struct Visitor {
        std::string operator()(const std::string& s) const { return s; }
        std::string operator()(std::int32_t v) const { return std::to_string(v); }
        std::string operator()(std::int64_t v) const { return std::to_string(v); }
        std::string operator()(bool v) const { return v ? "True" : "False"; }
    };
    return std::visit(Visitor{}, value);
}

std::int64_t HeaderToInteger(const HeaderValue& value) {
    if (const auto* number = std::get_if<std::int32_t>(&value)) return *number;
    if (const auto* number = std::get_if<std::int64_t>(&value)) return *number;
    if (const auto* text = std::get_if<std::string>(&value)) return std::strtoll(text->c_str(), nullptr, 10);
    return 0;
}

const HeaderValue* FindHeader(const HeaderTable& headers, const std::string& name) {
    for (const auto& [key, value] : headers)
        if (contracts::EqualsIgnoreCase(key, name)) return &value;
    return nullptr;
}

}  // namespace messaging
