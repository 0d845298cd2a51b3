#include "Messaging/Transport.h"

#include <cctype>

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

const HeaderValue* FindHeader(const HeaderTable& headers, const std::string& name) {
    for (const auto& [key, value] : headers) {
        if (key.size() != name.size()) continue;
        bool equal = true;
        for (std::size_t i = 0; i < key.size() && equal; ++i)
            equal =
                std::tolower(static_cast<unsigned char>(key[i])) == std::tolower(static_cast<unsigned char>(name[i]));
        if (equal) return &value;
    }
    return nullptr;
}

}  // namespace messaging
