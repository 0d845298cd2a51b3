#include "Runtime/LogContext.h"

#include <cstring>

namespace messaging {
namespace {
thread_local const LogFields* current_fields = nullptr;
}  // namespace

void LogFields::Set(const char* name, std::string value) {
    for (auto& field : fields_)
        if (std::strcmp(field.first, name) == 0) {
            field.second = std::move(value);
            return;
        }
    fields_.emplace_back(name, std::move(value));
}

const LogFields* CurrentLogFields() {
    return current_fields;
}

void AppendCurrentLogFields(std::string& out) {
    if (!current_fields) return;
    for (const auto& [name, value] : current_fields->fields()) {
        out += ' ';
        out += name;
        out += '=';
        out += value;
    }
}

LogScope::LogScope(const LogFields& fields) : previous_(current_fields) {
    current_fields = &fields;
}

LogScope::~LogScope() {
    current_fields = previous_;
}

}  // namespace messaging
