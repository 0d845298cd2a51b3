// The AMQP handshake: authentication, tuning and opening the channels.
#include "RabbitMq/RabbitMqTransport.h"

#include <algorithm>

#include "RabbitMqChannels.h"

namespace messaging {
namespace {

// A field-table entry that lives as long as the strings it points to.
amqp_table_entry_t Entry(const char* key, amqp_field_value_t value) {
    amqp_table_entry_t entry{};
    entry.key = amqp_cstring_bytes(key);
    entry.value = value;
    return entry;
}
amqp_field_value_t Bool(bool value) {
    amqp_field_value_t field{};
    field.kind = AMQP_FIELD_KIND_BOOLEAN;
    field.value.boolean = value;
    return field;
}
amqp_field_value_t Text(const std::string& value) {
    amqp_field_value_t field{};
    field.kind = AMQP_FIELD_KIND_UTF8;
    field.value.bytes = AmqpBytes(value);
    return field;
}

}  // namespace

void RabbitMqTransport::OnHandshakeMethod(amqp_method_number_t method, void* decoded) {
    switch (method) {
        case AMQP_CONNECTION_START_METHOD: {
            auto* start = static_cast<amqp_connection_start_t*>(decoded);
            if (AmqpString(start->mechanisms).find("PLAIN") == std::string::npos) {
                ConnectionLost("the broker does not offer PLAIN authentication");
                return;
            }
            std::vector<amqp_table_entry_t> capabilities = {
                Entry("publisher_confirms", Bool(true)), Entry("exchange_exchange_bindings", Bool(true)),
                Entry("basic.nack", Bool(true)),         Entry("consumer_cancel_notify", Bool(true)),
                Entry("connection.blocked", Bool(true)), Entry("authentication_failure_close", Bool(true))};
            amqp_field_value_t capability_table{};
            capability_table.kind = AMQP_FIELD_KIND_TABLE;
            capability_table.value.table = amqp_table_t{static_cast<int>(capabilities.size()), capabilities.data()};
            const std::string product = "MassTransitSagaCpp";
            std::vector<amqp_table_entry_t> properties = {Entry("product", Text(product)),
                                                          Entry("connection_name", Text(connection_name_)),
                                                          Entry("capabilities", capability_table)};
            std::string response;
            response.push_back('\0');
            response += settings_.username;
            response.push_back('\0');
            response += settings_.password;
            amqp_connection_start_ok_t start_ok{};
            start_ok.client_properties = amqp_table_t{static_cast<int>(properties.size()), properties.data()};
            start_ok.mechanism = amqp_cstring_bytes("PLAIN");
            start_ok.response = AmqpBytes(response);
            start_ok.locale = amqp_cstring_bytes("en_US");
            Send(0, AMQP_CONNECTION_START_OK_METHOD, &start_ok);
            Flush();
            return;
        }
        case AMQP_CONNECTION_TUNE_METHOD: {
            auto* tune = static_cast<amqp_connection_tune_t*>(decoded);
            const std::uint32_t frame_max =
                tune->frame_max == 0 ? kPreferredFrameMax : std::min(tune->frame_max, kPreferredFrameMax);
            heartbeat_seconds_ = static_cast<std::uint16_t>(settings_.heartbeat_seconds);
            if (tune->heartbeat != 0 && tune->heartbeat < heartbeat_seconds_) heartbeat_seconds_ = tune->heartbeat;
            amqp_connection_tune_ok_t tune_ok{};
            tune_ok.channel_max = tune->channel_max == 0 ? 2047 : tune->channel_max;
            tune_ok.frame_max = frame_max;
            tune_ok.heartbeat = heartbeat_seconds_;
            Send(0, AMQP_CONNECTION_TUNE_OK_METHOD, &tune_ok);
            writer_.set_frame_max(frame_max);
            reader_.set_max_frame(frame_max);
            amqp_connection_open_t open{};
            open.virtual_host = AmqpBytes(settings_.virtual_host);
            open.capabilities = amqp_empty_bytes;
            Send(0, AMQP_CONNECTION_OPEN_METHOD, &open);
            Flush();
            return;
        }
        case AMQP_CONNECTION_OPEN_OK_METHOD: {
            amqp_channel_open_t open{};
            SendRpc(kConsumeChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "channel.open");
            SendRpc(kPublishChannel, AMQP_CHANNEL_OPEN_METHOD, &open, AMQP_CHANNEL_OPEN_OK_METHOD, "channel.open");
            amqp_confirm_select_t select{};
            SendRpc(kPublishChannel, AMQP_CONFIRM_SELECT_METHOD, &select, AMQP_CONFIRM_SELECT_OK_METHOD,
                    "confirm.select", [this](void*) {
                        // The consume channel's open-ok came first: its reply was asked for first.
                        OnOpened();
                    });
            return;
        }
        case AMQP_CONNECTION_CLOSE_METHOD:
            OnConnectionClose(*static_cast<amqp_connection_close_t*>(decoded));
            return;
        default:
            ConnectionLost("unexpected method " + std::to_string(method) + " during the AMQP handshake");
    }
}

}  // namespace messaging
