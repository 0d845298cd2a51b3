// The bus's life: its receive endpoints, starting them, their kill switches, stopping.
#include "Bus/Bus.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <random>

#include "BusInternals.h"

namespace messaging {

namespace {

std::string NewBusAddressName(const contracts::HostInfo& host) {
    auto alnum = [](const std::string& text) {
        std::string out;
        for (char c : text)
            if (std::isalnum(static_cast<unsigned char>(c))) out.push_back(c);
        return out;
    };
    static constexpr char kZBase32[] = "ybndrfg8ejkmcpqxot1uwisza345h769";
    std::random_device device;
    std::string id;
    for (int i = 0; i < 26; ++i) id.push_back(kZBase32[device() % 32]);
    std::string name = alnum(host.machine_name) + "_" + alnum(host.process_name) + "_bus_" + id;
    if (name.size() > 72) name = name.substr(name.size() - 72);
    return name;
}

}  // namespace

std::vector<contracts::MessageTypeName> ReceiveEndpoint::ConsumedTypes() const {
    std::vector<contracts::MessageTypeName> types;
    for (const auto& registration : registrations_) types.push_back(registration.type);
    return types;
}

const ReceiveEndpoint::Registration* ReceiveEndpoint::Match(const std::vector<std::string>& message_types) const {
    for (const auto& urn : message_types)
        for (const auto& registration : registrations_)
            if (contracts::EqualsIgnoreCase(urn, registration.urn)) return &registration;
    return nullptr;
}

Bus::Bus(EventLoop& loop, Transport& transport, BusSettings settings)
    : loop_(loop),
      transport_(transport),
      settings_(std::move(settings)),
      host_(CurrentHostInfo(settings_.service_name)),
      base_address_(transport_.BaseAddress()) {
    bus_address_ = base_address_ + NewBusAddressName(host_) + "?temporary=true";
    if (settings_.metrics) metrics_ = std::make_unique<BusMetrics>(*settings_.metrics, settings_.service_name);
}

Bus::~Bus() {
    *alive_ = false;
    for (auto& endpoint : endpoints_)
        if (endpoint.consuming_) transport_.Cancel(endpoint.consumer_id_);
    if (response_endpoint_ && response_endpoint_->consuming_) transport_.Cancel(response_endpoint_->consumer_id_);
}

ReceiveEndpoint& Bus::AddReceiveEndpoint(ReceiveEndpointSettings settings) {
    endpoints_.push_back(ReceiveEndpoint(std::move(settings)));
    ReceiveEndpoint& endpoint = endpoints_.back();
    if (endpoint.settings_.kill_switch.enabled)
        endpoint.kill_switch_.emplace(endpoint.settings_.kill_switch, KillSwitch::Clock::now());
    if (metrics_)
        metrics_->ExpectMoves(endpoint.settings_.queue, ErrorQueueName(endpoint.settings_.queue),
                              SkippedQueueName(endpoint.settings_.queue));
    return endpoint;
}

std::vector<Bus::EndpointHealth> Bus::EndpointsHealth() const {
    std::vector<EndpointHealth> health;
    for (const auto& endpoint : endpoints_)
        health.push_back({.queue = endpoint.settings_.queue,
                          .consuming = endpoint.consuming_ && transport_.IsConsuming(endpoint.consumer_id_),
                          .kill_switch_tripped =
                              endpoint.kill_switch_ && endpoint.kill_switch_->state() == KillSwitch::State::kStopped,
                          .problem = transport_.ConsumerProblem(endpoint.consumer_id_)});
    return health;
}

Status Bus::Start() {
    stopping_ = false;
    const bool limits_redelivery = std::any_of(endpoints_.begin(), endpoints_.end(), [](const ReceiveEndpoint& e) {
        return e.settings_.redelivery_limit > 0;
    });
    if (limits_redelivery && !settings_.consumer_journal_path.empty() && !journal_) {
        try {
            journal_ = std::make_unique<ConsumerJournal>(settings_.consumer_journal_path);
        } catch (const std::runtime_error& e) {
            return Status::Unavailable(e.what());
        }
        std::string blamed;
        for (const auto& id : journal_->BlamedIds()) blamed += (blamed.empty() ? "" : ", ") + id;
        if (!blamed.empty())
            spdlog::warn("a process ended while the consumer of {} was running; each is counted when it comes back",
                         blamed);
    }
    for (auto& endpoint : endpoints_) {
        const auto consumed = endpoint.ConsumedTypes();
        transport_.Declare(
            ReceiveEndpointTopology(endpoint.settings_.queue, consumed, endpoint.settings_.queue_arguments),
            LogRefusal("the receive endpoint " + endpoint.settings_.queue));
    }
    if (response_endpoint_) StartResponseEndpoint();
    for (auto& endpoint : endpoints_) {
        StartConsuming(endpoint);
        const auto& settings = endpoint.settings_;
        spdlog::info("consuming {} (prefetch {}, concurrent message limit {}, retry {}, kill switch {})",
                     settings.queue, settings.prefetch,
                     settings.concurrent_message_limit > 0 ? std::to_string(settings.concurrent_message_limit)
                                                           : std::string("none"),
                     settings.retry.Describe(),
                     settings.kill_switch.enabled
                         ? std::to_string(settings.kill_switch.trip_threshold) + "% of more than " +
                               std::to_string(settings.kill_switch.activation_threshold) + " messages"
                         : std::string("off"));
    }
    return Status::Ok();
}

void Bus::StartConsuming(ReceiveEndpoint& endpoint) {
    ReceiveEndpoint* target = &endpoint;
    endpoint.consumer_id_ =
        transport_.Consume(endpoint.settings_.queue, endpoint.settings_.prefetch,
                           [this, target](Delivery delivery) { OnDelivery(*target, std::move(delivery)); });
    endpoint.consuming_ = true;
}

void Bus::TripKillSwitch(ReceiveEndpoint& endpoint) {
    const auto& settings = endpoint.settings_.kill_switch;
    spdlog::error("{}: kill switch tripped ({}); not consuming for {} s", endpoint.settings_.queue,
                  endpoint.kill_switch_->Describe(),
                  std::chrono::duration_cast<std::chrono::seconds>(settings.restart_timeout).count());
    if (endpoint.consuming_) transport_.Cancel(endpoint.consumer_id_);
    endpoint.consuming_ = false;
    ReturnWaiting(endpoint);
    endpoint.restart_timer_ = std::make_unique<Timer>(loop_);
    ReceiveEndpoint* target = &endpoint;
    endpoint.restart_timer_->Start(settings.restart_timeout, [this, target] {
        if (stopping_ || target->consuming_) return;
        target->kill_switch_->OnRestarted(KillSwitch::Clock::now());
        StartConsuming(*target);
        spdlog::info("{}: kill switch restarts the endpoint; one more failure stops it again", target->settings_.queue);
    });
}

void Bus::ReturnWaiting(ReceiveEndpoint& endpoint) {
    auto waiting = std::exchange(endpoint.waiting_, {});
    for (const auto& delivery : waiting) transport_.Nack(delivery, /*requeue=*/true);
}

void Bus::BeginWaiting(ReceiveEndpoint& endpoint) {
    const int limit = endpoint.settings_.concurrent_message_limit;
    while (!endpoint.waiting_.empty() && (limit == 0 || endpoint.active_ < limit)) {
        Delivery next = std::move(endpoint.waiting_.front());
        endpoint.waiting_.pop_front();
        Begin(endpoint, std::move(next));
    }
}

void Bus::Stop(std::function<void()> stopped) {
    stopping_ = true;
    for (auto& endpoint : endpoints_) {
        if (endpoint.consuming_) transport_.Cancel(endpoint.consumer_id_);
        endpoint.consuming_ = false;
        endpoint.restart_timer_.reset();
        ReturnWaiting(endpoint);
    }
    if (response_endpoint_ && response_endpoint_->consuming_) {
        transport_.Cancel(response_endpoint_->consumer_id_);
        response_endpoint_->consuming_ = false;
    }
    // No answer can come now: every request still waiting ends, as MassTransit cancels them.
    while (!pending_requests_.empty())
        FinishRequest(pending_requests_.begin()->first,
                      {.kind = RequestOutcome::Kind::kCanceled, .error = "the bus stopped before an answer came"});
    // A delivery waiting for a retry goes back to the queue; one being published finishes.
    std::vector<std::shared_ptr<InFlight>> waiting;
    for (auto& in_flight : in_flight_)
        if (in_flight->retry_timer) waiting.push_back(in_flight);
    for (auto& in_flight : waiting) {
        in_flight->retry_timer.reset();
        Settle(in_flight, /*ack=*/false);
    }
    // No consumer runs any more; Start opens the journal again and reads what it holds then.
    journal_.reset();
    if (in_flight_.empty()) {
        if (stopped) stopped();
    } else {
        on_stopped_ = std::move(stopped);
    }
}

}  // namespace messaging
