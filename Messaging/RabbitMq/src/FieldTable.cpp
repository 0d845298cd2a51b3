#include "RabbitMq/FieldTable.h"

namespace messaging {

EncodedTable::EncodedTable(const HeaderTable& table) {
    entries_.reserve(table.size());
    for (const auto& [name, value] : table) {
        amqp_table_entry_t entry{};
        entry.key = AmqpBytes(name);
        if (const auto* s = std::get_if<std::string>(&value)) {
            entry.value.kind = AMQP_FIELD_KIND_UTF8;  // a long string ('S'), which .NET reads as byte[]
            entry.value.value.bytes = AmqpBytes(*s);
        } else if (const auto* i32 = std::get_if<std::int32_t>(&value)) {
            entry.value.kind = AMQP_FIELD_KIND_I32;
            entry.value.value.i32 = *i32;
        } else if (const auto* i64 = std::get_if<std::int64_t>(&value)) {
            entry.value.kind = AMQP_FIELD_KIND_I64;
            entry.value.value.i64 = *i64;
        } else {
            entry.value.kind = AMQP_FIELD_KIND_BOOLEAN;
            entry.value.value.boolean = std::get<bool>(value);
        }
        entries_.push_back(entry);
    }
}

EncodedProperties::EncodedProperties(const MessageProperties& p) : headers_(p.headers) {
    properties_._flags = AMQP_BASIC_DELIVERY_MODE_FLAG;
    properties_.delivery_mode = p.delivery_mode;
    if (!p.content_type.empty()) {
        properties_._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        properties_.content_type = AmqpBytes(p.content_type);
    }
    if (!p.message_id.empty()) {
        properties_._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        properties_.message_id = AmqpBytes(p.message_id);
    }
    if (!p.correlation_id.empty()) {
        properties_._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        properties_.correlation_id = AmqpBytes(p.correlation_id);
    }
    if (!p.expiration.empty()) {
        properties_._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        properties_.expiration = AmqpBytes(p.expiration);
    }
    if (!p.reply_to.empty()) {
        properties_._flags |= AMQP_BASIC_REPLY_TO_FLAG;
        properties_.reply_to = AmqpBytes(p.reply_to);
    }
    if (p.priority) {
        properties_._flags |= AMQP_BASIC_PRIORITY_FLAG;
        properties_.priority = *p.priority;
    }
    if (p.headers.empty()) return;
    properties_._flags |= AMQP_BASIC_HEADERS_FLAG;
    properties_.headers = headers_.get();
}

HeaderTable DecodeTable(const amqp_table_t& table) {
    HeaderTable headers;
    for (int i = 0; i < table.num_entries; ++i) {
        const auto& entry = table.entries[i];
        const std::string key = AmqpString(entry.key);
        const auto& v = entry.value;
        switch (v.kind) {
            case AMQP_FIELD_KIND_UTF8:
            case AMQP_FIELD_KIND_BYTES:
                headers[key] = AmqpString(v.value.bytes);
                break;
            case AMQP_FIELD_KIND_BOOLEAN:
                headers[key] = v.value.boolean != 0;
                break;
            case AMQP_FIELD_KIND_I8:
                headers[key] = static_cast<std::int32_t>(v.value.i8);
                break;
            case AMQP_FIELD_KIND_U8:
                headers[key] = static_cast<std::int32_t>(v.value.u8);
                break;
            case AMQP_FIELD_KIND_I16:
                headers[key] = static_cast<std::int32_t>(v.value.i16);
                break;
            case AMQP_FIELD_KIND_U16:
                headers[key] = static_cast<std::int32_t>(v.value.u16);
                break;
            case AMQP_FIELD_KIND_I32:
                headers[key] = v.value.i32;
                break;
            case AMQP_FIELD_KIND_U32:
                headers[key] = static_cast<std::int64_t>(v.value.u32);
                break;
            case AMQP_FIELD_KIND_I64:
                headers[key] = v.value.i64;
                break;
            case AMQP_FIELD_KIND_U64:
            case AMQP_FIELD_KIND_TIMESTAMP:
                headers[key] = static_cast<std::int64_t>(v.value.u64);
                break;
            default:
                break;  // arrays, tables, floats and decimals are not used by MassTransit's headers
        }
    }
    return headers;
}

MessageProperties DecodeProperties(const amqp_basic_properties_t& p) {
    MessageProperties properties;
    properties.delivery_mode = 1;
    if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) properties.content_type = AmqpString(p.content_type);
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) properties.message_id = AmqpString(p.message_id);
    if (p._flags & AMQP_BASIC_CORRELATION_ID_FLAG) properties.correlation_id = AmqpString(p.correlation_id);
    if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) properties.delivery_mode = p.delivery_mode;
    if (p._flags & AMQP_BASIC_EXPIRATION_FLAG) properties.expiration = AmqpString(p.expiration);
    if (p._flags & AMQP_BASIC_REPLY_TO_FLAG) properties.reply_to = AmqpString(p.reply_to);
    if (p._flags & AMQP_BASIC_PRIORITY_FLAG) properties.priority = p.priority;
    if (p._flags & AMQP_BASIC_HEADERS_FLAG) properties.headers = DecodeTable(p.headers);
    return properties;
}

}  // namespace messaging
