#include "Contracts/MessageNames.h"

namespace contracts {
namespace {

std::string UrnBody(const MessageTypeName& type) {
    std::string out = type.ns + ":" + type.name;
    if (!type.generic_arguments.empty()) {
        out += "[";
        for (std::size_t i = 0; i < type.generic_arguments.size(); ++i) {
            if (i) out += ",";
            out += "[" + UrnBody(type.generic_arguments[i]) + "]";
        }
        out += "]";
    }
    return out;
}

std::string EntityBody(const MessageTypeName& type, const std::string& enclosing_ns) {
    std::string out = type.ns == enclosing_ns ? type.name : type.ns + ":" + type.name;
    if (!type.generic_arguments.empty()) {
        out += "--";
        for (std::size_t i = 0; i < type.generic_arguments.size(); ++i) {
            if (i) out += "::";
            out += EntityBody(type.generic_arguments[i], type.ns);
        }
        out += "--";
    }
    return out;
}

}  // namespace

std::string MessageTypeName::Urn() const {
    return "urn:message:" + UrnBody(*this);
}

std::string MessageTypeName::EntityName() const {
    return EntityBody(*this, std::string());
}

std::string MessageTypeName::DotNetName() const {
    std::string out = ns + "." + name;
    if (!generic_arguments.empty()) {
        out += "<";
        for (std::size_t i = 0; i < generic_arguments.size(); ++i)
            out += (i ? "," : "") + generic_arguments[i].DotNetName();
        out += ">";
    }
    return out;
}

MessageTypeName ContractName(std::string name) {
    return MessageTypeName{kContractsNamespace, std::move(name), {}};
}

MessageTypeName FaultOf(const MessageTypeName& message) {
    return MessageTypeName{"MassTransit", "Fault", {message}};
}

bool IsValidEntityName(const std::string& name) {
    if (name.empty()) return false;
    for (char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                        c == '_' || c == '.' || c == ':';
        if (!ok) return false;
    }
    return true;
}

}  // namespace contracts
