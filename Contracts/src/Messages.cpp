#include "Contracts/Messages.h"

namespace contracts {

OrderedJson WriteOrderItems(const std::vector<OrderItem>& items) {
    OrderedJson array = OrderedJson::array();
    for (const auto& item : items) {
        OrderedJson json;
        json["sku"] = item.sku;
        json["quantity"] = item.quantity;
        json["unitPrice"] = DecimalToJson(item.unit_price);
        array.push_back(std::move(json));
    }
    return array;
}

std::vector<OrderItem> ReadOrderItems(const Json& array) {
    std::vector<OrderItem> items;
    if (!array.is_array()) throw ContractError("items: must be an array");
    for (const auto& element : array) {
        FieldReader reader(element, "OrderItem");
        OrderItem item;
        item.sku = reader.RequiredString("sku");
        item.quantity = reader.RequiredInteger("quantity");
        if (item.quantity <= 0) reader.Fail("quantity", "must be positive");
        item.unit_price = reader.RequiredMoney("unitPrice");
        items.push_back(std::move(item));
    }
    return items;
}

namespace {

std::vector<OrderItem> ReadItems(const FieldReader& owner) {
    const Json* array = owner.Optional("items");
    if (array && !array->is_array()) owner.Fail("items", "must be an array");
    return array ? ReadOrderItems(*array) : std::vector<OrderItem>{};
}

OrderedJson WithOrderId(const OrderId& order_id) {
    OrderedJson json;
    json["orderId"] = order_id.str();
    return json;
}

}  // namespace

OrderedJson WriteHostInfo(const HostInfo& host) {
    OrderedJson json;
    json["machineName"] = host.machine_name;
    json["processName"] = host.process_name;
    json["processId"] = host.process_id;
    json["assembly"] = host.assembly;
    json["assemblyVersion"] = host.assembly_version;
    json["frameworkVersion"] = host.framework_version;
    json["massTransitVersion"] = host.mass_transit_version;
    json["operatingSystemVersion"] = host.operating_system_version;
    return json;
}

HostInfo ReadHostInfo(const Json& json) {
    HostInfo host;
    if (!json.is_object()) return host;
    auto text = [&](std::string_view name) {
        const Json* field = FindField(json, name);
        return field && field->is_string() ? field->get<std::string>() : std::string();
    };
    host.machine_name = text("machineName");
    host.process_name = text("processName");
    if (const Json* pid = FindField(json, "processId"); pid && pid->is_number_integer())
        host.process_id = pid->get<std::int64_t>();
    host.assembly = text("assembly");
    host.assembly_version = text("assemblyVersion");
    host.framework_version = text("frameworkVersion");
    host.mass_transit_version = text("massTransitVersion");
    host.operating_system_version = text("operatingSystemVersion");
    return host;
}

OrderedJson WriteExceptionInfo(const ExceptionInfo& info) {
    OrderedJson json;
    json["exceptionType"] = info.exception_type;
    json["innerException"] = info.inner_exception ? WriteExceptionInfo(*info.inner_exception) : OrderedJson();
    json["stackTrace"] = info.stack_trace;
    json["message"] = info.message;
    json["source"] = info.source;
    json["data"] = nullptr;
    return json;
}

ExceptionInfo ReadExceptionInfo(const Json& json) {
    ExceptionInfo info;
    if (!json.is_object()) return info;
    auto text = [&](std::string_view name) {
        const Json* field = FindField(json, name);
        return field && field->is_string() ? field->get<std::string>() : std::string();
    };
    info.exception_type = text("exceptionType");
    info.stack_trace = text("stackTrace");
    info.message = text("message");
    info.source = text("source");
    if (const Json* inner = FindField(json, "innerException"); inner && inner->is_object())
        info.inner_exception = std::make_shared<const ExceptionInfo>(ReadExceptionInfo(*inner));
    return info;
}

OrderedJson MessageContract<OrderSubmitted>::Write(const OrderSubmitted& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["timestamp"] = FormatIso8601(m.timestamp);
    json["customerNumber"] = m.customer_number;
    json["totalAmount"] = DecimalToJson(m.total_amount);
    json["items"] = WriteOrderItems(m.items);
    return json;
}

OrderSubmitted MessageContract<OrderSubmitted>::Read(const Json& json) {
    FieldReader reader(json, "OrderSubmitted");
    OrderSubmitted m;
    m.order_id = reader.RequiredOrderId("orderId");
    m.timestamp = reader.OptionalTimestamp("timestamp").value_or(Timestamp{});
    m.customer_number = reader.RequiredString("customerNumber");
    m.total_amount = reader.RequiredMoney("totalAmount");
    m.items = ReadItems(reader);
    return m;
}

OrderedJson MessageContract<CheckInventory>::Write(const CheckInventory& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["items"] = WriteOrderItems(m.items);
    return json;
}

CheckInventory MessageContract<CheckInventory>::Read(const Json& json) {
    FieldReader reader(json, "CheckInventory");
    return CheckInventory{.order_id = reader.RequiredOrderId("orderId"), .items = ReadItems(reader)};
}

OrderedJson MessageContract<StockReserved>::Write(const StockReserved& m) {
    return WithOrderId(m.order_id);
}

StockReserved MessageContract<StockReserved>::Read(const Json& json) {
    return StockReserved{.order_id = FieldReader(json, "StockReserved").RequiredOrderId("orderId")};
}

OrderedJson MessageContract<StockShortage>::Write(const StockShortage& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["reason"] = m.reason;
    return json;
}

StockShortage MessageContract<StockShortage>::Read(const Json& json) {
    FieldReader reader(json, "StockShortage");
    return StockShortage{.order_id = reader.RequiredOrderId("orderId"),
                         .reason = reader.OptionalString("reason").value_or("")};
}

OrderedJson MessageContract<ProcessPayment>::Write(const ProcessPayment& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["amount"] = DecimalToJson(m.amount);
    json["cardNumber"] = m.card_number;
    return json;
}

ProcessPayment MessageContract<ProcessPayment>::Read(const Json& json) {
    FieldReader reader(json, "ProcessPayment");
    ProcessPayment m;
    m.order_id = reader.RequiredOrderId("orderId");
    m.amount = reader.RequiredMoney("amount");
    m.card_number = reader.OptionalString("cardNumber").value_or("");
    return m;
}

OrderedJson MessageContract<PaymentAccepted>::Write(const PaymentAccepted& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["transactionId"] = m.transaction_id;
    return json;
}

PaymentAccepted MessageContract<PaymentAccepted>::Read(const Json& json) {
    FieldReader reader(json, "PaymentAccepted");
    return PaymentAccepted{.order_id = reader.RequiredOrderId("orderId"),
                           .transaction_id = reader.OptionalString("transactionId").value_or("")};
}

OrderedJson MessageContract<PaymentFailed>::Write(const PaymentFailed& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["reason"] = m.reason;
    return json;
}

PaymentFailed MessageContract<PaymentFailed>::Read(const Json& json) {
    FieldReader reader(json, "PaymentFailed");
    return PaymentFailed{.order_id = reader.RequiredOrderId("orderId"),
                         .reason = reader.OptionalString("reason").value_or("")};
}

OrderedJson MessageContract<OrderTimeoutExpired>::Write(const OrderTimeoutExpired& m) {
    return WithOrderId(m.order_id);
}

OrderTimeoutExpired MessageContract<OrderTimeoutExpired>::Read(const Json& json) {
    return OrderTimeoutExpired{.order_id = FieldReader(json, "OrderTimeoutExpired").RequiredOrderId("orderId")};
}

OrderedJson MessageContract<OrderCompleted>::Write(const OrderCompleted& m) {
    return WithOrderId(m.order_id);
}

OrderCompleted MessageContract<OrderCompleted>::Read(const Json& json) {
    return OrderCompleted{.order_id = FieldReader(json, "OrderCompleted").RequiredOrderId("orderId")};
}

OrderedJson MessageContract<OrderFailed>::Write(const OrderFailed& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["reason"] = m.reason;
    return json;
}

OrderFailed MessageContract<OrderFailed>::Read(const Json& json) {
    FieldReader reader(json, "OrderFailed");
    return OrderFailed{.order_id = reader.RequiredOrderId("orderId"),
                       .reason = reader.OptionalString("reason").value_or("")};
}

OrderedJson MessageContract<ReleaseStock>::Write(const ReleaseStock& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["reason"] = m.reason;
    return json;
}

ReleaseStock MessageContract<ReleaseStock>::Read(const Json& json) {
    FieldReader reader(json, "ReleaseStock");
    return ReleaseStock{.order_id = reader.RequiredOrderId("orderId"),
                        .reason = reader.OptionalString("reason").value_or("")};
}

OrderedJson MessageContract<StockReleased>::Write(const StockReleased& m) {
    return WithOrderId(m.order_id);
}

StockReleased MessageContract<StockReleased>::Read(const Json& json) {
    return StockReleased{.order_id = FieldReader(json, "StockReleased").RequiredOrderId("orderId")};
}

OrderedJson MessageContract<RefundPayment>::Write(const RefundPayment& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["transactionId"] = m.transaction_id;
    json["amount"] = DecimalToJson(m.amount);
    json["reason"] = m.reason;
    return json;
}

RefundPayment MessageContract<RefundPayment>::Read(const Json& json) {
    FieldReader reader(json, "RefundPayment");
    return RefundPayment{.order_id = reader.RequiredOrderId("orderId"),
                         .transaction_id = reader.OptionalString("transactionId").value_or(""),
                         .amount = reader.RequiredMoney("amount"),
                         .reason = reader.OptionalString("reason").value_or("")};
}

OrderedJson MessageContract<PaymentRefunded>::Write(const PaymentRefunded& m) {
    OrderedJson json = WithOrderId(m.order_id);
    json["transactionId"] = m.transaction_id;
    return json;
}

PaymentRefunded MessageContract<PaymentRefunded>::Read(const Json& json) {
    FieldReader reader(json, "PaymentRefunded");
    return PaymentRefunded{.order_id = reader.RequiredOrderId("orderId"),
                           .transaction_id = reader.OptionalString("transactionId").value_or("")};
}

}  // namespace contracts
