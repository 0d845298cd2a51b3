// How a message type is named on the wire, following MassTransit's formatters: the URN listed in an
// envelope's messageType (urn:message:Contracts:X, urn:message:MassTransit:Fault[[Contracts:X]]) and
// the RabbitMQ exchange it is published to (Contracts:X, MassTransit:Fault--Contracts:X--).
#pragma once

#include <string>
#include <vector>

namespace contracts {

struct MessageTypeName {
    std::string ns;
    std::string name;
    std::vector<MessageTypeName> generic_arguments;

    // urn:message:Ns:Name, or urn:message:Ns:Name[[ArgNs:Arg],[ArgNs:Arg2]] for a generic type.
    std::string Urn() const;
    // Ns:Name, or Ns:Name--Arg--: an argument's namespace is left out when it equals this type's.
    std::string EntityName() const;
    // The .NET short name used in MT-Fault-MessageType, e.g. "Contracts.CheckInventory".
    std::string DotNetName() const;

    bool operator==(const MessageTypeName&) const = default;
};

inline constexpr const char* kContractsNamespace = "Contracts";
inline constexpr const char* kFaultUrn = "urn:message:MassTransit:Fault";
inline constexpr const char* kFaultExchange = "MassTransit:Fault";

MessageTypeName ContractName(std::string name);           // Contracts:<name>
MessageTypeName FaultOf(const MessageTypeName& message);  // MassTransit:Fault<message>

// Entity names may hold letters, digits, '-', '_', '.', ':' (RabbitMqEntityNameValidator).
bool IsValidEntityName(const std::string& name);

}  // namespace contracts
