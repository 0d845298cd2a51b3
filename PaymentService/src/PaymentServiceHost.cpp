#include "PaymentService/PaymentServiceHost.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "Storage/GroupCommit.h"

namespace payment_service {

PaymentServiceHost::PaymentServiceHost(messaging::EventLoop& loop, messaging::Transport& transport,
                                       PaymentSettings settings)
    : settings_(std::move(settings)),
      db_(settings_.database.path, settings_.database.synchronous),
      unit_of_work_(messaging::MakeUnitOfWork(loop, db_, settings_.database.group_commit)),
      ledger_(db_),
      bus_(loop, transport, settings_.BusSettingsFor("PaymentService")) {
    // The schema is in place: from now on the loop never waits for another process's lock (StoreBusy).
    db_.SetBusyTimeout(std::chrono::milliseconds(0));
    bus_.SetUnitOfWork(unit_of_work_.get());
    bus_.AddReceiveEndpoint(settings_.endpoint)
        .Handle<contracts::ProcessPayment>(
            "Payment.ProcessPaymentConsumer",
            [this](messaging::ConsumeContext& context, const contracts::ProcessPayment& command) {
                OnProcessPayment(context, command);
            });
}

messaging::Status PaymentServiceHost::Start() {
    bus_.DeclarePublishTopology<contracts::PaymentAccepted>();
    bus_.DeclarePublishTopology<contracts::PaymentFailed>();
    return bus_.Start();
}

void PaymentServiceHost::OnProcessPayment(messaging::ConsumeContext& context,
                                          const contracts::ProcessPayment& command) {
    context.AddLogField(contracts::kOrderLogField, command.order_id.str());
    if (auto existing = ledger_.Find(command.order_id)) {
        // Never charge twice: answer a repeated command from the ledger.
        spdlog::info("order {}: ProcessPayment repeated; answering from the ledger", command.order_id.str());
        if (existing->accepted)
            context.Respond(
                contracts::PaymentAccepted{.order_id = command.order_id, .transaction_id = existing->transaction_id});
        else
            context.Respond(contracts::PaymentFailed{.order_id = command.order_id, .reason = existing->reason});
        return;
    }
    if (!command.amount.IsPositive()) throw messaging::NonRetryableError("ProcessPayment.amount must be positive");

    // The simulated gateway call; the retry policy's attempt number says which call this is for the
    // message, so the simulation keeps no per-order state.
    ++gateway_calls_;
    const int call = context.retry_attempt() + 1;
    const char last = command.order_id.str().back();
    const auto& simulation = settings_.simulation;
    if (simulation.crash_suffixes.find(last) != std::string::npos) {
        spdlog::critical("order {}: simulated crash while processing its payment (Simulation.CrashSuffixes)",
                         command.order_id.str());
        spdlog::shutdown();
        std::abort();
    }
    if (simulation.gateway_down_suffixes.find(last) != std::string::npos)
        throw PaymentGatewayUnavailable(simulation.gateway_down_message);
    for (const auto& rule : simulation.transient_failures)
        if (rule.suffix == last && call <= rule.failed_attempts)
            throw PaymentGatewayUnavailable(simulation.gateway_down_message);

    PaymentRecord record;
    record.order_id = command.order_id;
    record.amount = command.amount;
    if (simulation.decline_suffixes.find(last) != std::string::npos) {
        record.reason = simulation.decline_reason;
        ledger_.Record(record);
        context.Respond(contracts::PaymentFailed{.order_id = command.order_id, .reason = record.reason});
        spdlog::info("order {}: payment of {} declined ({})", command.order_id.str(), command.amount.ToString(),
                     record.reason);
        return;
    }
    record.accepted = true;
    record.transaction_id = contracts::Guid::New().ToString();
    ledger_.Record(record);
    context.Respond(contracts::PaymentAccepted{.order_id = command.order_id, .transaction_id = record.transaction_id});
    spdlog::info("order {}: payment of {} accepted ({})", command.order_id.str(), command.amount.ToString(),
                 record.transaction_id);
}

}  // namespace payment_service
