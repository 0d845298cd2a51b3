#include "Embedded/EmbeddedSystem.h"

#include "Metrics/ProcessMetrics.h"

#include <spdlog/spdlog.h>

namespace embedded {
namespace {

bool SameFile(const std::string& a, const std::string& b) {
    if (a == ":memory:" || b == ":memory:") return false;  // each connection has a database of its own
    return std::filesystem::weakly_canonical(a) == std::filesystem::weakly_canonical(b);
}

std::string Beside(const std::string& path, const std::string& suffix) {
    const std::filesystem::path original(path);
    return (original.parent_path() / (original.stem().string() + "-" + suffix + original.extension().string()))
        .string();
}

}  // namespace

EmbeddedSettings EmbeddedSettings::Load(const std::filesystem::path& config_dir,
                                        const std::vector<std::string>& environment) {
    EmbeddedSettings settings{
        order_service::OrderSettings::Load((config_dir / "OrderService.json").string(), environment),
        inventory_service::InventorySettings::Load((config_dir / "InventoryService.json").string(), environment),
        payment_service::PaymentSettings::Load((config_dir / "PaymentService.json").string(), environment)};
    return settings;
}

void EmbeddedSettings::SeparateDatabases() {
    auto& order_db = orders.database.path;
    auto& inventory_db = inventory.database.path;
    auto& payment_db = payment.database.path;
    if (SameFile(inventory_db, order_db)) {
        inventory_db = Beside(order_db, "inventory");
        spdlog::info("InventoryService would share {}; it uses {}", order_db, inventory_db);
    }
    if (SameFile(payment_db, order_db) || SameFile(payment_db, inventory_db)) {
        payment_db = Beside(order_db, "payment");
        spdlog::info("PaymentService would share a database; it uses {}", payment_db);
    }
}

EmbeddedSystem::EmbeddedSystem(messaging::EventLoop& loop, EmbeddedSettings settings) : transport_(loop) {
    settings.SeparateDatabases();
    inventory_ = std::make_unique<inventory_service::InventoryServiceHost>(loop, transport_, settings.inventory);
    payment_ = std::make_unique<payment_service::PaymentServiceHost>(loop, transport_, settings.payment);
    orders_ = std::make_unique<order_service::OrderServiceHost>(loop, transport_, settings.orders);
    // The process's figures beside OrderService's metrics, the ones its API port serves.
    if (auto* registry = orders_->metrics()) metrics::AddProcessMetrics(*registry);
}

EmbeddedSystem::~EmbeddedSystem() {
    orders_.reset();
    payment_.reset();
    inventory_.reset();
}

messaging::Status EmbeddedSystem::Start() {
    if (auto status = inventory_->Start(); !status.ok()) return status;
    if (auto status = payment_->Start(); !status.ok()) return status;
    return orders_->Start();
}

void EmbeddedSystem::Stop(std::function<void()> stopped) {
    orders_->Stop(
        [this, stopped = std::move(stopped)] { inventory_->Stop([this, stopped] { payment_->Stop(stopped); }); });
}

}  // namespace embedded
