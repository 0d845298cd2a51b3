// The messages the three services exchange (wire contract A1), each a plain struct with its JSON
// conversion in MessageContract<T>: its wire name, the URNs it is published under, and how it is
// written (camelCase, decimals as strings) and read back (any case, decimals as string or number).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "Contracts/Decimal.h"
#include "Contracts/Identifiers.h"
#include "Contracts/JsonFields.h"
#include "Contracts/MessageNames.h"

namespace contracts {

struct OrderItem {
    std::string sku{};
    std::int64_t quantity = 0;
    Decimal unit_price{};
    bool operator==(const OrderItem&) const = default;
};

struct OrderSubmitted {
    OrderId order_id{};
    Timestamp timestamp{};
    std::string customer_number{};
    Decimal total_amount{};
    std::vector<OrderItem> items{};  // ext
    bool operator==(const OrderSubmitted&) const = default;
};

struct CheckInventory {
    OrderId order_id{};
    std::vector<OrderItem> items{};  // ext
    bool operator==(const CheckInventory&) const = default;
};

struct StockReserved {
    OrderId order_id{};
    bool operator==(const StockReserved&) const = default;
};

struct StockShortage {
    OrderId order_id{};
    std::string reason{};
    bool operator==(const StockShortage&) const = default;
};

struct ProcessPayment {
    OrderId order_id{};
    Decimal amount{};
    std::string card_number{};  // a token, never a real card number
    bool operator==(const ProcessPayment&) const = default;
};

struct PaymentAccepted {
    OrderId order_id{};
    std::string transaction_id{};  // ext; empty when a peer left it out
    bool operator==(const PaymentAccepted&) const = default;
};

struct PaymentFailed {
    OrderId order_id{};
    std::string reason{};
    bool operator==(const PaymentFailed&) const = default;
};

struct OrderTimeoutExpired {
    OrderId order_id{};
    bool operator==(const OrderTimeoutExpired&) const = default;
};

struct OrderCompleted {
    OrderId order_id{};
    bool operator==(const OrderCompleted&) const = default;
};

struct OrderFailed {
    OrderId order_id{};
    std::string reason{};
    bool operator==(const OrderFailed&) const = default;
};

struct ReleaseStock {  // ext: compensation command
    OrderId order_id{};
    std::string reason{};
    bool operator==(const ReleaseStock&) const = default;
};

struct StockReleased {  // ext
    OrderId order_id{};
    bool operator==(const StockReleased&) const = default;
};

// ext: compensation command, published by the saga when a payment was taken for an order that had
// already failed (its PaymentAccepted came after the order's deadline). PaymentService gives the
// money back once per order, however often the command comes.
struct RefundPayment {
    OrderId order_id{};
    std::string transaction_id{};  // the payment to refund, as PaymentAccepted named it
    Decimal amount{};
    std::string reason{};
    bool operator==(const RefundPayment&) const = default;
};

struct PaymentRefunded {  // ext, from payment
    OrderId order_id{};
    std::string transaction_id{};
    bool operator==(const PaymentRefunded&) const = default;
};

// MassTransit's HostInfo, carried in every envelope and in Fault<T>.
struct HostInfo {
    std::string machine_name;
    std::string process_name;
    std::int64_t process_id = 0;
    std::string assembly;
    std::string assembly_version;
    std::string framework_version;
    std::string mass_transit_version;
    std::string operating_system_version;
    bool operator==(const HostInfo&) const = default;
};

struct ExceptionInfo {
    std::string exception_type;
    std::shared_ptr<const ExceptionInfo> inner_exception;
    std::string stack_trace;
    std::string message;
    std::string source;
};

// MassTransit.Fault<T>: published when a consumer of T gives up.
template <class T>
struct Fault {
    Guid fault_id;
    std::string faulted_message_id;
    Timestamp timestamp{};
    std::vector<ExceptionInfo> exceptions;
    HostInfo host;
    std::vector<std::string> fault_message_types;
    T message;
};

// The `items` array shared by OrderSubmitted and CheckInventory (also stored and served by OrderService).
OrderedJson WriteOrderItems(const std::vector<OrderItem>& items);
std::vector<OrderItem> ReadOrderItems(const Json& array);  // throws ContractError

OrderedJson WriteHostInfo(const HostInfo& host);
HostInfo ReadHostInfo(const Json& json);  // lenient: host values are informational
OrderedJson WriteExceptionInfo(const ExceptionInfo& info);
ExceptionInfo ReadExceptionInfo(const Json& json);

template <class T>
struct MessageContract;  // specialised for every message below

#define CONTRACTS_DECLARE_MESSAGE(Type)                                           \
    template <>                                                                   \
    struct MessageContract<Type> {                                                \
        static MessageTypeName Name() { return ContractName(#Type); }             \
        static std::vector<std::string> MessageTypes() { return {Name().Urn()}; } \
        static std::vector<MessageTypeName> ImplementedTypes() { return {}; }     \
        static OrderedJson Write(const Type& message);                            \
        static Type Read(const Json& json);                                       \
    }

CONTRACTS_DECLARE_MESSAGE(OrderSubmitted);
CONTRACTS_DECLARE_MESSAGE(CheckInventory);
CONTRACTS_DECLARE_MESSAGE(StockReserved);
CONTRACTS_DECLARE_MESSAGE(StockShortage);
CONTRACTS_DECLARE_MESSAGE(ProcessPayment);
CONTRACTS_DECLARE_MESSAGE(PaymentAccepted);
CONTRACTS_DECLARE_MESSAGE(PaymentFailed);
CONTRACTS_DECLARE_MESSAGE(OrderTimeoutExpired);
CONTRACTS_DECLARE_MESSAGE(OrderCompleted);
CONTRACTS_DECLARE_MESSAGE(OrderFailed);
CONTRACTS_DECLARE_MESSAGE(ReleaseStock);
CONTRACTS_DECLARE_MESSAGE(StockReleased);
CONTRACTS_DECLARE_MESSAGE(RefundPayment);
CONTRACTS_DECLARE_MESSAGE(PaymentRefunded);

#undef CONTRACTS_DECLARE_MESSAGE

template <class T>
struct MessageContract<Fault<T>> {
    static MessageTypeName Name() { return FaultOf(MessageContract<T>::Name()); }
    // Fault<T> also implements the non-generic MassTransit.Fault interface.
    static std::vector<MessageTypeName> ImplementedTypes() { return {MessageTypeName{"MassTransit", "Fault", {}}}; }
    static std::vector<std::string> MessageTypes() { return {Name().Urn(), kFaultUrn}; }

    static OrderedJson Write(const Fault<T>& fault) {
        OrderedJson json;
        json["faultId"] = fault.fault_id.ToString();
        json["faultedMessageId"] =
            fault.faulted_message_id.empty() ? OrderedJson() : OrderedJson(fault.faulted_message_id);
        json["timestamp"] = FormatIso8601(fault.timestamp);
        json["exceptions"] = OrderedJson::array();
        for (const auto& e : fault.exceptions) json["exceptions"].push_back(WriteExceptionInfo(e));
        json["host"] = WriteHostInfo(fault.host);
        json["faultMessageTypes"] = fault.fault_message_types;
        json["message"] = MessageContract<T>::Write(fault.message);
        return json;
    }

    static Fault<T> Read(const Json& json) {
        FieldReader reader(json, Name().DotNetName());
        Fault<T> fault;
        if (auto id = reader.OptionalString("faultId")) fault.fault_id = Guid::Parse(*id).value_or(Guid());
        fault.faulted_message_id = reader.OptionalString("faultedMessageId").value_or("");
        fault.timestamp = reader.OptionalTimestamp("timestamp").value_or(Timestamp{});
        if (const Json* exceptions = reader.Optional("exceptions"); exceptions && exceptions->is_array())
            for (const auto& e : *exceptions) fault.exceptions.push_back(ReadExceptionInfo(e));
        if (const Json* host = reader.Optional("host")) fault.host = ReadHostInfo(*host);
        if (const Json* types = reader.Optional("faultMessageTypes"); types && types->is_array())
            for (const auto& t : *types)
                if (t.is_string()) fault.fault_message_types.push_back(t.get<std::string>());
        fault.message = MessageContract<T>::Read(reader.Required("message"));
        return fault;
    }
};

}  // namespace contracts
