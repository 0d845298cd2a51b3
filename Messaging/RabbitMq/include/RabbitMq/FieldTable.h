// Message properties and header tables between our types (Transport/Transport.h) and rabbitmq-c's
// structs: strings go out as long strings, which .NET reads as byte[] the way MassTransit expects.
#pragma once

#include <amqp.h>

#include <vector>

#include "Transport/Transport.h"

namespace messaging {

// rabbitmq-c's view of a header or argument table, pointing into it: keep both alive while it is
// encoded. Strings go out as long strings ('S').
class EncodedTable {
  public:
    explicit EncodedTable(const HeaderTable& table);
    EncodedTable(const EncodedTable&) = delete;
    EncodedTable& operator=(const EncodedTable&) = delete;
    amqp_table_t get() { return amqp_table_t{static_cast<int>(entries_.size()), entries_.data()}; }

  private:
    std::vector<amqp_table_entry_t> entries_;
};

// rabbitmq-c's view of `properties`, pointing into it: keep both alive while it is encoded.
class EncodedProperties {
  public:
    explicit EncodedProperties(const MessageProperties& properties);
    EncodedProperties(const EncodedProperties&) = delete;
    EncodedProperties& operator=(const EncodedProperties&) = delete;
    amqp_basic_properties_t& get() { return properties_; }

  private:
    EncodedTable headers_;
    amqp_basic_properties_t properties_{};
};

HeaderTable DecodeTable(const amqp_table_t& table);
MessageProperties DecodeProperties(const amqp_basic_properties_t& properties);

inline amqp_bytes_t AmqpBytes(const std::string& text) {
    return amqp_bytes_t{text.size(), const_cast<char*>(text.data())};
}
inline std::string AmqpString(amqp_bytes_t bytes) {
    return std::string(static_cast<const char*>(bytes.bytes), bytes.len);
}

}  // namespace messaging
