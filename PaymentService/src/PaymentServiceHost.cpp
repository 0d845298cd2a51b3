#include "PaymentService/PaymentServiceHost.h"
#include "Hosting/HealthMetrics.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

#include "Storage/GroupCommit.h"

namespace payment_service {

PaymentServiceHost::PaymentServiceHost(messaging::EventLoop& loop, messaging::Transport& transport,
                                       PaymentSettings settings)
    : settings_(std::move(settings)),
      db_(settings_.database.path, settings_.database.synchronous),
      unit_of_work_(messaging::MakeUnitOfWork(loop, db_, settings_.database.group_commit,
                                              messaging::CommitMetricsOn(metrics(), "PaymentService"))),
      ledger_(db_),
      bus_(loop, transport, settings_.BusSettingsFor("PaymentService", &metrics_)) {
    messaging::AddHealthMetrics(
        metrics(), bus_, [this] { return db_.CheckHealth(); }, "PaymentService");
    // The schema is in place: from now on the loop never waits for another process's lock (StoreBusy).
    db_.SetBusyTimeout(std::chrono::milliseconds(0));
    bus_.SetUnitOfWork(unit_of_work_.get());
    auto& endpoint = bus_.AddReceiveEndpoint(settings_.endpoint);
    endpoint.Handle<contracts::ProcessPayment>(
        "Payment.ProcessPaymentConsumer",
        [this](messaging::ConsumeContext& context, const contracts::ProcessPayment& command) {
            OnProcessPayment(context, command);
        });
    endpoint.Handle<contracts::RefundPayment>(
        "Payment.RefundPaymentConsumer",
        [this](messaging::ConsumeContext& context, const contracts::RefundPayment& command) {
            OnRefundPayment(context, command);
        });
}

messaging::Status PaymentServiceHost::Start() {
    bus_.DeclarePublishTopology<contracts::PaymentAccepted>();
    bus_.DeclarePublishTopology<contracts::PaymentFailed>();
    bus_.DeclarePublishTopology<contracts::PaymentRefunded>();
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
    if (const auto& deadline = context.envelope().expiration_time; deadline && contracts::UtcNow() >= *deadline) {
        // The order's deadline has passed: its saga has failed it or is about to, so taking the money
        // now would keep it for an order that will not complete. Declined, and remembered so.
        PaymentRecord expired{.order_id = command.order_id, .reason = kDeadlinePassedReason, .amount = command.amount};
        ledger_.Record(expired);
        context.Respond(contracts::PaymentFailed{.order_id = command.order_id, .reason = expired.reason});
        spdlog::warn("order {}: payment of {} not taken: its deadline {} has passed", command.order_id.str(),
                     command.amount.ToString(), contracts::FormatIso8601(*deadline));
        return;
    }

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

void PaymentServiceHost::OnRefundPayment(messaging::ConsumeContext& context, const contracts::RefundPayment& command) {
    context.AddLogField(contracts::kOrderLogField, command.order_id.str());
    const auto payment = ledger_.Find(command.order_id);
    // Nothing this service took: an operator must look (the payment may be another service's).
    if (!payment || !payment->accepted)
        throw messaging::NonRetryableError("no payment of order " + command.order_id.str() +
                                           " was taken here to refund");
    if (!command.transaction_id.empty() && command.transaction_id != payment->transaction_id)
        throw messaging::NonRetryableError("order " + command.order_id.str() + " was paid with " +
                                           payment->transaction_id + ", not " + command.transaction_id);
    if (ledger_.MarkRefunded(command.order_id))
        spdlog::info("order {}: payment {} of {} refunded ({})", command.order_id.str(), payment->transaction_id,
                     payment->amount.ToString(), command.reason);
    else
        spdlog::info("order {}: payment {} was refunded already; answering again", command.order_id.str(),
                     payment->transaction_id);
    context.Respond(
        contracts::PaymentRefunded{.order_id = command.order_id, .transaction_id = payment->transaction_id});
}

}  // namespace payment_service
