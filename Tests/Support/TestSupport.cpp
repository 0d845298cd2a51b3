#include "Support/TestSupport.h"

#include <random>
#include <thread>

namespace test_support {

SqliteLock::SqliteLock(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK ||
        sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
        const std::string error = db_ ? sqlite3_errmsg(db_) : "out of memory";
        sqlite3_close(db_);
        db_ = nullptr;
        throw std::runtime_error("cannot lock " + path + ": " + error);
    }
}

void SqliteLock::Release() {
    if (!db_) return;
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db_);
    db_ = nullptr;
}

InMemorySystem::InMemorySystem(SystemOptions options, std::shared_ptr<TempDir> dir)
    : dir_(dir ? std::move(dir) : std::make_shared<TempDir>()) {
    loop().Invoke([&] {
        transport_ = std::make_unique<messaging::InMemoryTransport>(loop());

        order_service::OrderSettings order_settings;
        order_settings.database.path = dir_->File("orders.db");
        order_settings.database.group_commit = options.group_commit;
        order_settings.endpoint.retry = options.order_retry;
        order_settings.saga.timeout = options.saga_timeout;
        order_settings.http.port = 0;
        order_settings.http.host = "127.0.0.1";
        order_settings.http.request_timeout_ms = static_cast<int>(options.http_request_timeout.count());
        order_settings.metrics_enabled = options.metrics_enabled;
        order_ = std::make_unique<order_service::OrderServiceHost>(loop(), *transport_, order_settings);
        harness_.Observe(order_->bus());
        if (auto status = order_->Start(); !status.ok()) throw std::runtime_error(status.message());

        inventory_service::InventorySettings inventory_settings;
        inventory_settings.database.path = dir_->File("inventory.db");
        inventory_settings.database.group_commit = options.group_commit;
        inventory_settings.endpoint.retry = options.worker_retry;
        inventory_ = std::make_unique<inventory_service::InventoryServiceHost>(loop(), *transport_, inventory_settings);
        harness_.Observe(inventory_->bus());
        if (options.start_inventory)
            if (auto status = inventory_->Start(); !status.ok()) throw std::runtime_error(status.message());

        payment_service::PaymentSettings payment_settings;
        payment_settings.database.path = dir_->File("payments.db");
        payment_settings.database.group_commit = options.group_commit;
        payment_settings.endpoint.retry = options.worker_retry;
        payment_settings.simulation.transient_failures = options.transient_failures;
        payment_ = std::make_unique<payment_service::PaymentServiceHost>(loop(), *transport_, payment_settings);
        harness_.Observe(payment_->bus());
        if (options.start_payment)
            if (auto status = payment_->Start(); !status.ok()) throw std::runtime_error(status.message());
    });
    if (options.start_http) http_port_ = order_->StartHttp();
}

InMemorySystem::~InMemorySystem() {
    loop().Invoke([&] {
        order_.reset();
        inventory_.reset();
        payment_.reset();
        transport_.reset();
    });
}

messaging::Status InMemorySystem::PublishRaw(const std::string& exchange, messaging::TransportMessage message) {
    auto result = std::make_shared<std::promise<messaging::Status>>();
    auto future = result->get_future();
    loop().Post([this, exchange, message, result] {
        transport_->Publish(exchange, message,
                            [result](const messaging::Status& status) { result->set_value(status); });
    });
    return future.get();
}

void InMemorySystem::Submit(const std::string& order_id, const std::string& amount) {
    contracts::OrderSubmitted submitted{.order_id = contracts::OrderId::Parse(order_id).value(),
                                        .timestamp = contracts::UtcNow(),
                                        .customer_number = "CUST-1",
                                        .total_amount = *contracts::Decimal::Parse(amount)};
    auto status = Publish(submitted);
    if (!status.ok()) throw std::runtime_error(status.message());
}

std::optional<order_service::OrderRecord> InMemorySystem::Order(const std::string& order_id) {
    return loop().Invoke([&] { return order_->repository().FindOrder(contracts::OrderId::Parse(order_id).value()); });
}

std::optional<order_service::OrderSagaInstance> InMemorySystem::Saga(const std::string& order_id) {
    return loop().Invoke([&] { return order_->repository().LoadSaga(contracts::OrderId::Parse(order_id).value()); });
}

// The waits below wake whenever a bus records something, which is when saga state can change.
bool InMemorySystem::WaitForStatus(const std::string& order_id, order_service::OrderStatus status,
                                   std::chrono::milliseconds timeout) {
    return harness_.WaitUntil(
        [&] {
            auto order = Order(order_id);
            return order && order->status == status;
        },
        timeout);
}

bool InMemorySystem::SagaExists(const std::string& order_id, order_service::OrderState state,
                                std::chrono::milliseconds timeout) {
    return harness_.WaitUntil(
        [&] {
            auto saga = Saga(order_id);
            return saga && saga->state == state;
        },
        timeout);
}

std::size_t InMemorySystem::QueueDepth(const std::string& queue) {
    return loop().Invoke([&] { return transport_->ReadyCount(queue); });
}

std::vector<messaging::TransportMessage> InMemorySystem::QueueMessages(const std::string& queue) {
    return loop().Invoke([&] { return transport_->ReadyMessages(queue); });
}

bool InMemorySystem::WaitIdle(std::chrono::milliseconds timeout) {
    return harness_.WaitUntil(
        [&] {
            return loop().Invoke([&] {
                for (const char* queue : {"order-service", "inventory-service", "payment-service"})
                    if (transport_->ReadyCount(queue) || transport_->UnackedCount(queue)) return false;
                return true;
            });
        },
        timeout);
}

}  // namespace test_support
