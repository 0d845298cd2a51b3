#include "OrderService/OrderRepository.h"

#include "Wire/Envelope.h"

namespace order_service {
namespace {

using contracts::Json;

std::string ItemsToJson(const std::vector<contracts::OrderItem>& items) {
    return contracts::WriteOrderItems(items).dump();
}

std::vector<contracts::OrderItem> ItemsFromJson(const std::string& text) {
    return contracts::ReadOrderItems(Json::parse(text));  // written by ItemsToJson
}

std::string TimeText(contracts::Timestamp time) {
    return contracts::FormatIso8601(time);
}
contracts::Timestamp TimeFrom(const std::string& text) {
    return contracts::ParseIso8601(text).value_or(contracts::Timestamp{});
}

// The applied message ids as a JSON array of strings (an id may be any string a peer chose).
std::string JoinIds(const std::vector<std::string>& ids) {
    return Json(ids).dump();
}
std::vector<std::string> SplitIds(const std::string& text) {
    if (text.empty()) return {};
    const Json parsed = Json::parse(text, nullptr, false);
    std::vector<std::string> ids;
    if (!parsed.is_array()) return ids;
    for (const auto& id : parsed)
        if (id.is_string()) ids.push_back(id.get<std::string>());
    return ids;
}

// The message's properties as the JSON object the outbox keeps, written field by field (a JSON
// object per message was a fortieth of OrderService's work). Integer headers keep their width:
// {"i32": n} or {"i64": n}.
std::string PropertiesToJson(const messaging::MessageProperties& properties) {
    std::string json = "{\"contentType\":";
    messaging::AppendJsonString(json, properties.content_type);
    json += ",\"messageId\":";
    messaging::AppendJsonString(json, properties.message_id);
    json += ",\"correlationId\":";
    messaging::AppendJsonString(json, properties.correlation_id);
    json += ",\"deliveryMode\":";
    json += std::to_string(properties.delivery_mode);
    json += ",\"headers\":{";
    bool first = true;
    for (const auto& [name, value] : properties.headers) {
        if (!first) json += ',';
        first = false;
        messaging::AppendJsonString(json, name);
        json += ':';
        if (auto text = std::get_if<std::string>(&value))
            messaging::AppendJsonString(json, *text);
        else if (auto i32 = std::get_if<std::int32_t>(&value))
            json += "{\"i32\":" + std::to_string(*i32) + "}";
        else if (auto i64 = std::get_if<std::int64_t>(&value))
            json += "{\"i64\":" + std::to_string(*i64) + "}";
        else
            json += std::get<bool>(value) ? "true" : "false";
    }
    json += "}}";
    return json;
}

messaging::HeaderTable HeadersFromJson(const Json& json) {
    messaging::HeaderTable headers;
    for (auto it = json.begin(); it != json.end(); ++it) {
        const auto& value = it.value();
        if (value.is_string())
            headers[it.key()] = value.get<std::string>();
        else if (value.is_boolean())
            headers[it.key()] = value.get<bool>();
        else if (value.contains("i32"))
            headers[it.key()] = value["i32"].get<std::int32_t>();
        else if (value.contains("i64"))
            headers[it.key()] = value["i64"].get<std::int64_t>();
    }
    return headers;
}

// The schema, one step per version: step i brings version i - 1 to i.
constexpr std::string_view kMigrations[] = {
    R"sql(
            CREATE TABLE order_saga (
                correlation_id TEXT PRIMARY KEY,
                current_state TEXT NOT NULL,
                version INTEGER NOT NULL,
                customer_number TEXT NOT NULL,
                total_amount TEXT NOT NULL,
                items TEXT NOT NULL,
                reason TEXT NOT NULL,
                timeout_token TEXT NOT NULL,
                timeout_due_ms INTEGER,
                stock_released INTEGER NOT NULL,
                transaction_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL);
            CREATE INDEX order_saga_timeouts ON order_saga(timeout_due_ms) WHERE timeout_due_ms IS NOT NULL;
            CREATE TABLE orders (
                order_id TEXT PRIMARY KEY,
                status TEXT NOT NULL,
                reason TEXT NOT NULL,
                customer_number TEXT NOT NULL,
                total_amount TEXT NOT NULL,
                items TEXT NOT NULL,
                transaction_id TEXT NOT NULL,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL);
            CREATE TABLE outbox (
                sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                exchange TEXT NOT NULL,
                routing_key TEXT NOT NULL,
                properties TEXT NOT NULL,
                body TEXT NOT NULL);
            CREATE TABLE saga_inbox (
                message_id TEXT PRIMARY KEY,
                received_ms INTEGER NOT NULL);
        )sql",
    // Version 2: the ids of applied messages live in the saga row (read with it, no extra index to
    // update per message) instead of a table of their own.
    R"sql(
            ALTER TABLE order_saga ADD COLUMN applied_messages TEXT NOT NULL DEFAULT '';
            DROP TABLE saga_inbox;
        )sql",
    // Version 3: the items are no longer kept in the saga row. Only the transition that starts the saga
    // uses them (from the OrderSubmitted it handles), and the orders table keeps them for GET /order;
    // parsing them back on every event was a twentieth of the saga's work.
    "ALTER TABLE order_saga DROP COLUMN items",
    // Version 4: whether a payment taken after the order failed was refunded (RefundPayment).
    "ALTER TABLE order_saga ADD COLUMN payment_refunded INTEGER NOT NULL DEFAULT 0",
};
static_assert(std::size(kMigrations) == OrderRepository::kSchemaVersion);

}  // namespace

OrderRepository::OrderRepository(messaging::SqliteDatabase& db) : db_(db) {
    messaging::MigrateSchema(db_, "OrderService", {std::begin(kMigrations), std::end(kMigrations)});
}

std::optional<OrderSagaInstance> OrderRepository::LoadSaga(const contracts::OrderId& order_id) {
    auto& select = db_.Prepare(
        "SELECT current_state, version, customer_number, total_amount, reason, timeout_token, timeout_due_ms, "
        "stock_released, transaction_id, created_at, updated_at, applied_messages, payment_refunded FROM order_saga "
        "WHERE correlation_id = ?1");
    select.Bind(1, order_id.str());
    if (!select.Step()) return std::nullopt;
    OrderSagaInstance instance;
    instance.order_id = order_id;
    auto state = ParseState(select.Text(0));
    if (!state)
        throw std::runtime_error("order " + order_id.str() + " has an unknown stored state '" + select.Text(0) + "'");
    instance.state = *state;
    instance.version = select.Integer(1);
    instance.customer_number = select.Text(2);
    instance.total_amount = contracts::Decimal::Parse(select.Text(3)).value_or(contracts::Decimal());
    instance.reason = select.Text(4);
    instance.timeout_token = select.Text(5);
    if (!select.IsNull(6)) instance.timeout_due_ms = select.Integer(6);
    instance.stock_released = select.Integer(7) != 0;
    instance.transaction_id = select.Text(8);
    instance.created_at = TimeFrom(select.Text(9));
    instance.updated_at = TimeFrom(select.Text(10));
    instance.applied_message_ids = SplitIds(select.Text(11));
    instance.payment_refunded = select.Integer(12) != 0;
    select.Reset();
    return instance;
}

void OrderRepository::SaveSaga(const OrderSagaInstance& instance) {
    // The columns a transition can change; the same parameter numbers in both statements.
    auto bind_changing = [&](messaging::Statement& statement) -> messaging::Statement& {
        statement.Bind(1, instance.order_id.str())
            .Bind(2, StateName(instance.state))
            .Bind(3, instance.version + 1)
            .Bind(4, instance.reason)
            .Bind(5, instance.timeout_token);
        if (instance.timeout_due_ms)
            statement.Bind(6, *instance.timeout_due_ms);
        else
            statement.BindNull(6);
        return statement.Bind(7, instance.stock_released ? 1 : 0)
            .Bind(8, instance.transaction_id)
            .Bind(9, TimeText(instance.updated_at))
            .Bind(10, instance.version)
            .Bind(11, JoinIds(instance.applied_message_ids))
            .Bind(15, instance.payment_refunded ? 1 : 0);
    };
    if (instance.version == 0) {
        auto& insert = db_.Prepare(
            "INSERT INTO order_saga (correlation_id, current_state, version, reason, timeout_token, timeout_due_ms, "
            "stock_released, transaction_id, updated_at, applied_messages, customer_number, total_amount, "
            "created_at, payment_refunded) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11, ?12, ?13, ?14, ?15 WHERE "
            "?10 = 0 "
            "ON CONFLICT(correlation_id) DO NOTHING");
        bind_changing(insert)
            .Bind(12, instance.customer_number)
            .Bind(13, instance.total_amount.ToString())
            .Bind(14, TimeText(instance.created_at))
            .Run();
    } else {
        // The customer, amount and creation time are set when the saga starts and never change.
        auto& update = db_.Prepare(
            "UPDATE order_saga SET current_state = ?2, version = ?3, reason = ?4, timeout_token = ?5, "
            "timeout_due_ms = ?6, stock_released = ?7, transaction_id = ?8, updated_at = ?9, applied_messages = ?11, "
            "payment_refunded = ?15 "
            "WHERE correlation_id = ?1 AND version = ?10");
        bind_changing(update).Run();
    }
    if (db_.Changes() != 1)
        throw ConcurrencyConflict("order " + instance.order_id.str() +
                                  ": the saga was changed by another writer (version " +
                                  std::to_string(instance.version) + ")");
}

void OrderRepository::DeleteSaga(const contracts::OrderId& order_id, std::int64_t expected_version) {
    db_.Prepare("DELETE FROM order_saga WHERE correlation_id = ?1 AND version = ?2")
        .Bind(1, order_id.str())
        .Bind(2, expected_version)
        .Run();
    if (db_.Changes() != 1)
        throw ConcurrencyConflict("order " + order_id.str() +
                                  ": the saga was changed by another writer before it was finalized");
}

std::string_view StatusName(OrderStatus status) {
    switch (status) {
        case OrderStatus::kAccepted:
            return "Accepted";
        case OrderStatus::kSubmitted:
            return "Submitted";
        case OrderStatus::kInventoryReserved:
            return "InventoryReserved";
        case OrderStatus::kCompleted:
            return "Completed";
        case OrderStatus::kFailed:
            return "Failed";
    }
    return "Accepted";
}

std::optional<OrderStatus> ParseStatus(std::string_view name) {
    for (auto status : {OrderStatus::kAccepted, OrderStatus::kSubmitted, OrderStatus::kInventoryReserved,
                        OrderStatus::kCompleted, OrderStatus::kFailed})
        if (StatusName(status) == name) return status;
    return std::nullopt;
}

OrderStatus StatusOf(OrderState state) {
    switch (state) {
        case OrderState::kInitial:
            return OrderStatus::kAccepted;
        case OrderState::kSubmitted:
            return OrderStatus::kSubmitted;
        case OrderState::kInventoryReserved:
            return OrderStatus::kInventoryReserved;
        case OrderState::kCompleted:
            return OrderStatus::kCompleted;
        case OrderState::kFailed:
            return OrderStatus::kFailed;
    }
    return OrderStatus::kAccepted;
}

namespace {
OrderStatus StoredStatus(const contracts::OrderId& order_id, const std::string& name) {
    if (auto status = ParseStatus(name)) return *status;
    throw std::runtime_error("order " + order_id.str() + ": unknown status '" + name + "' in the orders table");
}
}  // namespace

std::optional<OrderRecord> OrderRepository::FindOrder(const contracts::OrderId& order_id) {
    auto& select = db_.Prepare(
        "SELECT status, reason, customer_number, total_amount, items, transaction_id, created_at, updated_at "
        "FROM orders WHERE order_id = ?1");
    select.Bind(1, order_id.str());
    if (!select.Step()) return std::nullopt;
    OrderRecord order;
    order.order_id = order_id;
    order.status = StoredStatus(order_id, select.Text(0));
    order.reason = select.Text(1);
    order.customer_number = select.Text(2);
    order.total_amount = contracts::Decimal::Parse(select.Text(3)).value_or(contracts::Decimal());
    order.items = ItemsFromJson(select.Text(4));
    order.transaction_id = select.Text(5);
    order.created_at = TimeFrom(select.Text(6));
    order.updated_at = TimeFrom(select.Text(7));
    select.Reset();
    return order;
}

std::optional<OrderStatus> OrderRepository::FindOrderStatus(const contracts::OrderId& order_id) {
    auto& select = db_.Prepare("SELECT status FROM orders WHERE order_id = ?1");
    select.Bind(1, order_id.str());
    if (!select.Step()) return std::nullopt;
    const std::string name = select.Text(0);
    select.Reset();
    return StoredStatus(order_id, name);
}

bool OrderRepository::InsertOrderIfAbsent(const OrderRecord& order) {
    db_.Prepare(
           "INSERT INTO orders (order_id, status, reason, customer_number, total_amount, items, transaction_id, "
           "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT(order_id) DO NOTHING")
        .Bind(1, order.order_id.str())
        .Bind(2, StatusName(order.status))
        .Bind(3, order.reason)
        .Bind(4, order.customer_number)
        .Bind(5, order.total_amount.ToString())
        .Bind(6, ItemsToJson(order.items))
        .Bind(7, order.transaction_id)
        .Bind(8, TimeText(order.created_at))
        .Bind(9, TimeText(order.updated_at))
        .Run();
    return db_.Changes() == 1;
}

void OrderRepository::UpsertOrderFromSaga(const OrderSagaInstance& instance) {
    // The row normally exists (POST /order wrote it): only the status columns change.
    db_.Prepare("UPDATE orders SET status = ?2, reason = ?3, transaction_id = ?4, updated_at = ?5 WHERE order_id = ?1")
        .Bind(1, instance.order_id.str())
        .Bind(2, StatusName(StatusOf(instance.state)))
        .Bind(3, instance.reason)
        .Bind(4, instance.transaction_id)
        .Bind(5, TimeText(instance.updated_at))
        .Run();
    if (db_.Changes() == 1) return;
    // An OrderSubmitted published by another service: the order is new here.
    InsertOrderIfAbsent(OrderRecord{.order_id = instance.order_id,
                                    .status = StatusOf(instance.state),
                                    .reason = instance.reason,
                                    .customer_number = instance.customer_number,
                                    .total_amount = instance.total_amount,
                                    .items = instance.items,
                                    .transaction_id = instance.transaction_id,
                                    .created_at = instance.created_at,
                                    .updated_at = instance.updated_at});
}

OrderRepository::Acceptance OrderRepository::AcceptOrder(const OrderRecord& order,
                                                         const messaging::OutgoingMessage& submitted) {
    messaging::Transaction transaction(db_);
    Acceptance acceptance;
    if (!InsertOrderIfAbsent(order)) {
        acceptance.existing = FindOrder(order.order_id);
        return acceptance;  // rolled back: nothing was written
    }
    acceptance.outbox_sequence = AddToOutbox(submitted);
    transaction.Commit();
    acceptance.stored = true;
    return acceptance;
}

std::vector<std::int64_t> OrderRepository::SaveTransition(const OrderSagaInstance& next, bool finalize,
                                                          std::int64_t stored_version,
                                                          const std::vector<messaging::OutgoingMessage>& outgoing) {
    messaging::Transaction transaction(db_);
    if (!finalize)
        SaveSaga(next);
    else if (stored_version > 0)
        DeleteSaga(next.order_id, stored_version);
    UpsertOrderFromSaga(next);
    std::vector<std::int64_t> sequences;
    sequences.reserve(outgoing.size());
    for (const auto& message : outgoing) sequences.push_back(AddToOutbox(message));
    transaction.Commit();
    return sequences;
}

std::int64_t OrderRepository::AddToOutbox(const messaging::OutgoingMessage& message) {
    db_.Prepare("INSERT INTO outbox (exchange, routing_key, properties, body) VALUES (?1, ?2, ?3, ?4)")
        .Bind(1, message.exchange)
        .Bind(2, message.message.routing_key)
        .BindUnowned(3, PropertiesToJson(message.message.properties))  // a temporary that outlives Run()
        .BindUnowned(4, message.message.body)
        .Run();
    return sqlite3_last_insert_rowid(db_.raw());
}

void OrderRepository::RemoveFromOutbox(const std::vector<std::int64_t>& sequences) {
    auto& remove = db_.Prepare("DELETE FROM outbox WHERE sequence = ?1");
    for (auto sequence : sequences) {
        remove.Reset();
        remove.Bind(1, sequence).Run();
    }
}

OutboxSummary OrderRepository::SummarizeOutbox() {
    auto& select = db_.Prepare(
        "SELECT count(*), (SELECT json_extract(body, '$.sentTime') FROM outbox ORDER BY sequence LIMIT 1) FROM outbox");
    OutboxSummary summary;
    if (!select.Step()) return summary;
    summary.rows = select.Integer(0);
    if (!select.IsNull(1)) summary.oldest_written = contracts::ParseIso8601(select.Text(1));
    select.Reset();  // ends the read now, not at the statement's next use
    return summary;
}

std::map<OrderState, std::int64_t> OrderRepository::CountSagasByState() {
    auto& select = db_.Prepare("SELECT current_state, count(*) FROM order_saga GROUP BY current_state");
    std::map<OrderState, std::int64_t> counts;
    while (select.Step())
        if (auto state = ParseState(select.Text(0))) counts[*state] = select.Integer(1);
    return counts;
}

std::vector<OutboxEntry> OrderRepository::PendingOutbox(std::size_t limit) {
    auto& select =
        db_.Prepare("SELECT sequence, exchange, routing_key, properties, body FROM outbox ORDER BY sequence LIMIT ?1");
    select.Bind(1, static_cast<std::int64_t>(limit));
    std::vector<OutboxEntry> entries;
    while (select.Step()) {
        OutboxEntry entry;
        entry.sequence = select.Integer(0);
        entry.message.exchange = select.Text(1);
        entry.message.message.routing_key = select.Text(2);
        const Json props = Json::parse(select.Text(3), nullptr, false);
        auto& properties = entry.message.message.properties;
        if (props.is_object()) {
            properties.content_type = props.value("contentType", "");
            properties.message_id = props.value("messageId", "");
            properties.correlation_id = props.value("correlationId", "");
            properties.delivery_mode = props.value("deliveryMode", std::uint8_t{2});
            if (props.contains("headers")) properties.headers = HeadersFromJson(props["headers"]);
        }
        entry.message.message.body = select.Text(4);
        entries.push_back(std::move(entry));
    }
    select.Reset();
    return entries;
}

std::vector<PendingTimeout> OrderRepository::PendingTimeouts() {
    auto& select = db_.Prepare(
        "SELECT correlation_id, timeout_token, timeout_due_ms FROM order_saga WHERE timeout_due_ms IS NOT NULL "
        "ORDER BY timeout_due_ms");
    std::vector<PendingTimeout> timeouts;
    while (select.Step()) {
        auto order_id = contracts::OrderId::Parse(select.Text(0));
        if (!order_id) throw std::runtime_error("order_saga holds an invalid order id '" + select.Text(0) + "'");
        timeouts.push_back({std::move(*order_id), select.Text(1), select.Integer(2)});
    }
    select.Reset();
    return timeouts;
}

}  // namespace order_service
