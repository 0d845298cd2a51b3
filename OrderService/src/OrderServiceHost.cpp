#include "OrderService/OrderServiceHost.h"
#include "Hosting/HealthMetrics.h"
#include "Storage/GroupCommit.h"

#include <spdlog/spdlog.h>

namespace order_service {

OrderServiceHost::OrderServiceHost(messaging::EventLoop& loop, messaging::Transport& transport, OrderSettings settings)
    : loop_(loop),
      settings_(std::move(settings)),
      db_(settings_.database.path, settings_.database.synchronous),
      unit_of_work_(messaging::MakeUnitOfWork(loop, db_, settings_.database.group_commit,
                                              messaging::CommitMetricsOn(metrics(), "OrderService"))),
      repository_(db_),
      bus_(loop, transport, settings_.BusSettingsFor("OrderService", &metrics_)),
      timeouts_(loop,
                [this](const contracts::OrderId& order_id, const std::string& token) { SendTimeout(order_id, token); }),
      order_metrics_(metrics() ? std::make_unique<OrderMetrics>(*metrics(), repository_, timeouts_) : nullptr),
      relay_(loop, bus_, repository_, *unit_of_work_),
      saga_(repository_, relay_, timeouts_, settings_.saga, order_metrics_.get()),
      submission_(bus_, repository_, *unit_of_work_, relay_),
      lookup_(repository_, *unit_of_work_) {
    // The schema is in place: from now on the loop never waits for another process's lock (StoreBusy).
    db_.SetBusyTimeout(std::chrono::milliseconds(0));
    bus_.SetUnitOfWork(unit_of_work_.get());
    saga_.Register(bus_.AddReceiveEndpoint(settings_.endpoint));
    messaging::AddHealthMetrics(
        metrics(), bus_, [this] { return db_.CheckHealth(); }, "OrderService");
}

OrderServiceHost::~OrderServiceHost() {
    if (http_) http_->StopAccepting();
}

messaging::Status OrderServiceHost::Start() {
    using namespace contracts;
    bus_.DeclarePublishTopology<OrderSubmitted>();
    bus_.DeclarePublishTopology<CheckInventory>();
    bus_.DeclarePublishTopology<ProcessPayment>();
    bus_.DeclarePublishTopology<ReleaseStock>();
    bus_.DeclarePublishTopology<RefundPayment>();
    bus_.DeclarePublishTopology<OrderCompleted>();
    bus_.DeclarePublishTopology<OrderFailed>();
    if (auto status = bus_.Start(); !status.ok()) return status;
    saga_.RestoreTimeouts();
    relay_.Start();
    return messaging::Status::Ok();
}

int OrderServiceHost::StartHttp() {
    http_ = std::make_unique<OrderHttpApi>(
        loop_, submission_, lookup_, [this] { return Health(); }, metrics(), settings_.http);
    http_->Start();
    return http_->port();
}

void OrderServiceHost::Stop(std::function<void()> stopped) {
    if (http_) http_->StopAccepting();
    bus_.Stop(std::move(stopped));
}

void OrderServiceHost::SendTimeout(const contracts::OrderId& order_id, const std::string& token) {
    messaging::SendOptions options;
    options.headers["MT-Scheduling-TokenId"] = token;
    auto message =
        bus_.PrepareSend(settings_.endpoint.queue, contracts::OrderTimeoutExpired{.order_id = order_id}, options);
    bus_.Dispatch(std::move(message), [this, order_id, token](const messaging::Status& status) {
        if (status.ok()) return;
        // The broker is away: try again shortly, the saga ignores a timeout that no longer counts.
        spdlog::warn("order {}: timeout could not be sent ({}); retrying", order_id.str(), status.message());
        timeouts_.Schedule(order_id, token, contracts::ToUnixMillis(contracts::UtcNow()) + 1000);
    });
}

}  // namespace order_service
