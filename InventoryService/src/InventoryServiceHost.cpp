#include "InventoryService/InventoryServiceHost.h"
#include "Hosting/HealthMetrics.h"
#include "Storage/GroupCommit.h"

#include <spdlog/spdlog.h>

namespace inventory_service {

InventoryServiceHost::InventoryServiceHost(messaging::EventLoop& loop, messaging::Transport& transport,
                                           InventorySettings settings)
    : settings_(std::move(settings)),
      db_(settings_.database.path, settings_.database.synchronous),
      unit_of_work_(messaging::MakeUnitOfWork(loop, db_, settings_.database.group_commit,
                                              messaging::CommitMetricsOn(metrics(), "InventoryService"))),
      ledger_(db_),
      bus_(loop, transport, settings_.BusSettingsFor("InventoryService", &metrics_)) {
    messaging::AddHealthMetrics(
        metrics(), bus_, [this] { return db_.CheckHealth(); }, "InventoryService");
    // The schema is in place: from now on the loop never waits for another process's lock (StoreBusy).
    db_.SetBusyTimeout(std::chrono::milliseconds(0));
    bus_.SetUnitOfWork(unit_of_work_.get());
    auto& endpoint = bus_.AddReceiveEndpoint(settings_.endpoint);
    endpoint.Handle<contracts::CheckInventory>(
        "Inventory.CheckInventoryConsumer",
        [this](messaging::ConsumeContext& context, const contracts::CheckInventory& command) {
            OnCheckInventory(context, command);
        });
    endpoint.Handle<contracts::ReleaseStock>(
        "Inventory.ReleaseStockConsumer",
        [this](messaging::ConsumeContext& context, const contracts::ReleaseStock& command) {
            OnReleaseStock(context, command);
        });
}

messaging::Status InventoryServiceHost::Start() {
    bus_.DeclarePublishTopology<contracts::StockReserved>();
    bus_.DeclarePublishTopology<contracts::StockShortage>();
    bus_.DeclarePublishTopology<contracts::StockReleased>();
    return bus_.Start();
}

void InventoryServiceHost::OnCheckInventory(messaging::ConsumeContext& context,
                                            const contracts::CheckInventory& command) {
    context.AddLogField(contracts::kOrderLogField, command.order_id.str());
    const char last = command.order_id.str().back();
    const bool in_stock = settings_.simulation.shortage_suffixes.find(last) == std::string::npos;
    const auto result = ledger_.Reserve(command.order_id, in_stock, settings_.simulation.shortage_reason);
    // A repeated command gets the same answer again: the earlier reply may not have been delivered.
    switch (result.status) {
        case ReservationStatus::kReserved:
            context.Respond(contracts::StockReserved{.order_id = command.order_id});
            break;
        case ReservationStatus::kShortage:
            context.Respond(contracts::StockShortage{.order_id = command.order_id, .reason = result.reason});
            break;
        case ReservationStatus::kReleased:
            context.Respond(contracts::StockShortage{.order_id = command.order_id,
                                                     .reason = "Order was cancelled before stock was reserved"});
            break;
    }
    spdlog::info("order {}: CheckInventory -> {}{}", command.order_id.str(),
                 result.status == ReservationStatus::kReserved ? "StockReserved" : "StockShortage",
                 result.newly_recorded ? "" : " (repeated)");
}

void InventoryServiceHost::OnReleaseStock(messaging::ConsumeContext& context, const contracts::ReleaseStock& command) {
    context.AddLogField(contracts::kOrderLogField, command.order_id.str());
    const bool released = ledger_.Release(command.order_id);
    spdlog::info("order {}: ReleaseStock ({}) -> {}", command.order_id.str(), command.reason,
                 released ? "released" : "nothing held");
    context.Respond(contracts::StockReleased{.order_id = command.order_id});
}

}  // namespace inventory_service
