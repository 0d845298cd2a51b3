// End-to-end stories over the in-memory bus with all three services running: the four simulation
// outcomes, a timeout, a retry that recovers, duplicates, a late reservation, a restart on the same
// SQLite files, and two writers racing on one saga row.
#include <doctest/doctest.h>

#include "Support/TestSupport.h"

using namespace contracts::literals;

using namespace order_service;
using namespace contracts;
using namespace std::chrono_literals;
using test_support::InMemorySystem;
using test_support::SystemOptions;

namespace {

template <class T>
std::size_t CountFor(InMemorySystem& system, const std::string& id) {
    return system.harness().Published<T>([&](const T& m) { return m.order_id.str() == id; }).size();
}

}  // namespace

TEST_SUITE("OrderService.Scenarios") {
    SCENARIO("An order whose id ends in 3 completes") {
        GIVEN("all three services on the in-memory bus") {
            InMemorySystem system;
            WHEN("order ...3 is submitted") {
                system.Submit("order-0003");
                THEN("it is Completed, paid once, and its saga is finalized") {
                    REQUIRE(system.WaitForStatus("order-0003", order_service::OrderStatus::kCompleted));
                    REQUIRE(system.WaitIdle());
                    CHECK(CountFor<CheckInventory>(system, "order-0003") == 1);
                    CHECK(CountFor<StockReserved>(system, "order-0003") == 1);
                    CHECK(CountFor<ProcessPayment>(system, "order-0003") == 1);
                    CHECK(CountFor<PaymentAccepted>(system, "order-0003") == 1);
                    CHECK(CountFor<OrderCompleted>(system, "order-0003") == 1);
                    CHECK(CountFor<OrderFailed>(system, "order-0003") == 0);
                    CHECK_FALSE(system.Saga("order-0003").has_value());
                    CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 1);
                    CHECK(system.Order("order-0003")->transaction_id.size() == 36);
                }
            }
        }
    }

    SCENARIO("An order whose id ends in 0 fails for want of stock") {
        InMemorySystem system;
        system.Submit("order-0010");
        REQUIRE(system.WaitForStatus("order-0010", order_service::OrderStatus::kFailed));
        REQUIRE(system.WaitIdle());
        CHECK(system.Order("order-0010")->reason == "Out of stock");
        CHECK(CountFor<ProcessPayment>(system, "order-0010") == 0);
        CHECK(CountFor<OrderFailed>(system, "order-0010") == 1);
        CHECK(CountFor<ReleaseStock>(system, "order-0010") == 0);
    }

    SCENARIO("An order whose id ends in 1 fails payment and releases its stock") {
        InMemorySystem system;
        system.Submit("order-0021");
        REQUIRE(system.WaitForStatus("order-0021", order_service::OrderStatus::kFailed));
        REQUIRE(system.harness().WaitUntil([&] {
            auto s = system.Saga("order-0021");
            return s && s->stock_released;
        }));
        CHECK(system.Order("order-0021")->reason == "Credit card limit exceeded");
        CHECK(CountFor<ReleaseStock>(system, "order-0021") == 1);
        CHECK(CountFor<StockReleased>(system, "order-0021") == 1);
        CHECK(CountFor<OrderCompleted>(system, "order-0021") == 0);
        CHECK(system.loop().Invoke([&] { return system.inventory().ledger().StatusOf("order-0021"_order_id); }) ==
              inventory_service::ReservationStatus::kReleased);
    }

    SCENARIO("An order whose id ends in 2 exhausts the payment retries and fails") {
        InMemorySystem system;  // worker retry Interval(3, 20ms): 4 attempts
        system.Submit("order-0032");
        REQUIRE(system.WaitForStatus("order-0032", order_service::OrderStatus::kFailed));
        REQUIRE(system.WaitIdle());
        CHECK(system.loop().Invoke([&] { return system.payment().gateway_calls(); }) == 4);
        REQUIRE(system.QueueDepth("payment-service_error") == 1);
        const auto copy = system.QueueMessages("payment-service_error").at(0);
        CHECK(messaging::HeaderToString(*messaging::FindHeader(copy.properties.headers, "MT-Fault-Message")) ==
              "Payment gateway unavailable");
        CHECK(system.harness().Published<Fault<ProcessPayment>>().size() == 1);
        CHECK(CountFor<ReleaseStock>(system, "order-0032") == 1);
        CHECK(system.Order("order-0032")->reason == "Payment faulted: Payment gateway unavailable");
        CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 0);
    }

    SCENARIO("A payment that fails twice and then succeeds completes the order") {
        InMemorySystem system(SystemOptions{.transient_failures = {{'5', 2}}});
        system.Submit("order-0045");
        REQUIRE(system.WaitForStatus("order-0045", order_service::OrderStatus::kCompleted));
        CHECK(system.QueueDepth("payment-service_error") == 0);
        CHECK(system.harness().Published<Fault<ProcessPayment>>().empty());
        CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 1);
    }

    SCENARIO("An order that waits too long for payment times out and releases its stock") {
        GIVEN("a 200 ms saga timeout and no payment service") {
            InMemorySystem system(SystemOptions{.saga_timeout = 200ms, .start_payment = false});
            WHEN("an order is submitted") {
                system.Submit("order-0053");
                THEN("it fails with the timeout reason and its stock is released") {
                    REQUIRE(system.WaitForStatus("order-0053", order_service::OrderStatus::kFailed));
                    CHECK(system.Order("order-0053")->reason == kTimeoutReason);
                    REQUIRE(system.harness().WaitUntil([&] {
                        auto s = system.Saga("order-0053");
                        return s && s->stock_released;
                    }));
                    CHECK(CountFor<ReleaseStock>(system, "order-0053") == 1);
                    CHECK(CountFor<OrderFailed>(system, "order-0053") == 1);
                    CHECK(system.harness().Consumed<OrderTimeoutExpired>().size() == 1);
                }
            }
        }
    }

    SCENARIO("A payment still retrying when the order times out is not taken after the deadline") {
        GIVEN("payments that fail twice 200 ms apart and a 250 ms saga timeout") {
            InMemorySystem system(SystemOptions{
                .saga_timeout = 250ms,
                .worker_retry = messaging::RetryPolicy::Interval(3, 200ms),
                .transient_failures = {payment_service::TransientFailureRule{.suffix = '5', .failed_attempts = 2}}});
            WHEN("orders are submitted whose payments would succeed on the third attempt") {
                const std::vector<std::string> ids = {"late-105", "late-115", "late-125"};
                for (const auto& id : ids) system.Submit(id);
                THEN("each fails on its timeout and no money is taken or kept") {
                    for (const auto& id : ids) REQUIRE(system.WaitForStatus(id, OrderStatus::kFailed));
                    REQUIRE(system.harness().WaitUntil(
                        [&] { return system.harness().Published<PaymentFailed>().size() == ids.size(); }));
                    REQUIRE(system.WaitIdle());
                    CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 0);
                    for (const auto& id : ids) {
                        CHECK(system.Order(id)->reason == kTimeoutReason);
                        CHECK(CountFor<PaymentAccepted>(system, id) == 0);
                    }
                    for (const auto& failed : system.harness().Published<PaymentFailed>())
                        CHECK(failed.reason == payment_service::kDeadlinePassedReason);
                    CHECK(system.QueueDepth("order-service_error") == 0);
                    CHECK(system.QueueDepth("payment-service_error") == 0);
                }
            }
        }
    }

    SCENARIO("A payment taken for an order that already failed is refunded exactly once") {
        GIVEN("an order that timed out before any payment service ran") {
            InMemorySystem system(SystemOptions{.saga_timeout = 200ms, .start_payment = false});
            system.Submit("refund-3");
            REQUIRE(system.WaitForStatus("refund-3", OrderStatus::kFailed));
            REQUIRE(system.loop().Invoke([&] { return system.payment().Start(); }).ok());
            WHEN("a peer that sets no deadline asks for its payment") {
                REQUIRE(
                    system
                        .Publish(ProcessPayment{
                            .order_id = "refund-3"_order_id, .amount = *Decimal::Parse("149.97"), .card_number = "t"})
                        .ok());
                THEN("the saga refunds it and records the refund, and the order stays Failed") {
                    REQUIRE(system.harness().WaitUntil([&] {
                        auto saga = system.Saga("refund-3");
                        return saga && saga->payment_refunded;
                    }));
                    REQUIRE(system.WaitIdle());
                    auto refunds = system.harness().Published<RefundPayment>();
                    REQUIRE(refunds.size() == 1);
                    CHECK(refunds[0].amount == *Decimal::Parse("149.97"));
                    CHECK(refunds[0].transaction_id == system.harness().Published<PaymentAccepted>()[0].transaction_id);
                    CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 1);
                    CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountRefunds(); }) == 1);
                    CHECK(system.Order("refund-3")->status == OrderStatus::kFailed);
                    CHECK(system.QueueDepth("order-service_error") == 0);
                }
                AND_WHEN("the PaymentAccepted comes again as a new message") {
                    REQUIRE(system.harness().WaitUntil([&] {
                        auto saga = system.Saga("refund-3");
                        return saga && saga->payment_refunded;
                    }));
                    const auto accepted = system.harness().Published<PaymentAccepted>().at(0);
                    REQUIRE(system.Publish(accepted).ok());
                    THEN("the refund is asked again but given once") {
                        REQUIRE(system.harness().WaitUntil(
                            [&] { return system.harness().Published<PaymentRefunded>().size() == 2; }));
                        REQUIRE(system.WaitIdle());
                        CHECK(system.harness().Published<RefundPayment>().size() == 2);
                        CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountRefunds(); }) == 1);
                        CHECK(system.QueueDepth("payment-service_error") == 0);
                    }
                }
            }
        }
    }

    SCENARIO("Duplicates of every event in a completed flow change nothing") {
        InMemorySystem system;
        system.Submit("order-0063");
        REQUIRE(system.WaitForStatus("order-0063", order_service::OrderStatus::kCompleted));
        REQUIRE(system.WaitIdle());
        const auto published_before = system.harness().Published().size();
        system.Submit("order-0063");
        REQUIRE(system.Publish(StockReserved{.order_id = "order-0063"_order_id}).ok());
        REQUIRE(system.Publish(PaymentAccepted{.order_id = "order-0063"_order_id, .transaction_id = "tx-dup"}).ok());
        REQUIRE(system.harness().WaitUntil([&] { return system.harness().Consumed<PaymentAccepted>().size() == 2; }));
        REQUIRE(system.WaitIdle());
        // Only the three duplicates we published ourselves were added.
        CHECK(system.harness().Published().size() == published_before + 3);
        CHECK(system.Order("order-0063")->status == order_service::OrderStatus::kCompleted);
        CHECK(CountFor<OrderCompleted>(system, "order-0063") == 1);
    }

    SCENARIO("A StockReserved that arrives after the order failed releases the stock") {
        InMemorySystem system(SystemOptions{.saga_timeout = 100ms, .start_inventory = false});
        system.Submit("order-0073");
        REQUIRE(system.WaitForStatus("order-0073", order_service::OrderStatus::kFailed));
        REQUIRE(system.WaitIdle());  // the timeout's own ReleaseStock is out
        const auto releases = CountFor<ReleaseStock>(system, "order-0073");
        REQUIRE(system.Publish(StockReserved{.order_id = "order-0073"_order_id}).ok());
        REQUIRE(
            system.harness().WaitUntil([&] { return CountFor<ReleaseStock>(system, "order-0073") == releases + 1; }));
        CHECK(system.Order("order-0073")->status == order_service::OrderStatus::kFailed);
    }

    SCENARIO("A redelivered event (the same message id) is applied once") {
        InMemorySystem system(SystemOptions{.saga_timeout = 100ms, .start_inventory = false});
        system.Submit("order-0074");
        REQUIRE(system.WaitForStatus("order-0074", order_service::OrderStatus::kFailed));
        REQUIRE(system.WaitIdle());          // the timeout's own ReleaseStock is out
        REQUIRE(system.Saga("order-0074"));  // Failed waits for the stock to be released
        const auto releases = CountFor<ReleaseStock>(system, "order-0074");
        // In Failed, every new StockReserved releases stock; the same message delivered twice must not.
        const auto late = system.loop().Invoke(
            [&] { return system.orders().bus().PreparePublish(StockReserved{.order_id = "order-0074"_order_id}); });
        REQUIRE(system.PublishRaw(late.exchange, late.message).ok());
        REQUIRE(system.PublishRaw(late.exchange, late.message).ok());
        REQUIRE(system.harness().WaitUntil([&] { return system.harness().Consumed<StockReserved>().size() == 2; }));
        REQUIRE(system.WaitIdle());
        CHECK(CountFor<ReleaseStock>(system, "order-0074") == releases + 1);
        const auto saga = system.Saga("order-0074");
        REQUIRE(saga);
        CHECK(saga->HasApplied(late.message.properties.message_id));
    }

    SCENARIO("The saga's state and timeouts survive a restart on the same SQLite file") {
        auto dir = std::make_shared<test_support::TempDir>();
        {
            // An order stuck in Submitted because inventory is down; then the process goes away.
            InMemorySystem first(SystemOptions{.saga_timeout = 60s, .start_inventory = false}, dir);
            first.Submit("order-0083");
            REQUIRE(first.SagaExists("order-0083", OrderState::kSubmitted));
        }
        WHEN("the services start again on the same files") {
            InMemorySystem second(SystemOptions{}, dir);
            THEN("the instance and its timeout are back, and a StockReserved continues the order") {
                const auto saga = second.Saga("order-0083");
                REQUIRE(saga);
                CHECK(saga->state == OrderState::kSubmitted);
                CHECK(second.loop().Invoke([&] { return second.orders().timeouts().PendingCount(); }) == 1);
                REQUIRE(second.Publish(StockReserved{.order_id = "order-0083"_order_id}).ok());
                REQUIRE(second.WaitForStatus("order-0083", order_service::OrderStatus::kCompleted));
            }
        }
    }

    SCENARIO("A timeout that came due while the service was down fires after the restart") {
        auto dir = std::make_shared<test_support::TempDir>();
        {
            InMemorySystem first(SystemOptions{.saga_timeout = 300ms, .start_inventory = false}, dir);
            first.Submit("order-0093");
            REQUIRE(first.SagaExists("order-0093", OrderState::kSubmitted));
            first.loop().Invoke(
                [&] { first.orders().timeouts().Cancel("order-0093"_order_id); });  // "crash" before it fires
        }
        InMemorySystem second(SystemOptions{.saga_timeout = 300ms, .start_inventory = false}, dir);
        REQUIRE(second.WaitForStatus("order-0093", order_service::OrderStatus::kFailed));
        CHECK(second.Order("order-0093")->reason == kTimeoutReason);
    }

    SCENARIO("Two writers racing on one saga row resolve through the version check") {
        GIVEN("an order in Submitted and a second connection to the same database") {
            // Commits of their own (Database.GroupCommit false), as two processes sharing the file would
            // run: with group commit the batch holds the write lock from load to save, so no other
            // writer can get between them at all.
            InMemorySystem system(
                SystemOptions{.start_inventory = false, .start_payment = false, .group_commit = false});
            system.Submit("order-0103");
            REQUIRE(system.SagaExists("order-0103", OrderState::kSubmitted));
            messaging::SqliteDatabase other_db(system.dir()->File("orders.db"));
            OrderRepository other(other_db);
            int interference = 0;
            system.loop().Invoke([&] {
                system.orders().saga().SetBeforeSaveHook([&](const OrderSagaInstance& loaded) {
                    if (interference++ > 0) return;
                    // The other writer commits a change between our load and our save.
                    OrderSagaInstance theirs = *other.LoadSaga(loaded.order_id);
                    theirs.reason = "touched by the other writer";
                    other.SaveSaga(theirs);
                });
            });
            WHEN("StockReserved is handled while the other writer updates the row") {
                REQUIRE(system.Publish(StockReserved{.order_id = "order-0103"_order_id}).ok());
                THEN("the first save conflicts, the retry reloads and applies the event once") {
                    REQUIRE(system.SagaExists("order-0103", OrderState::kInventoryReserved));
                    REQUIRE(system.WaitIdle());
                    const auto saga = system.Saga("order-0103");
                    CHECK(saga->version == 3);  // ours (1) -> theirs (2) -> the retried save (3)
                    CHECK(saga->reason == "touched by the other writer");
                    CHECK(interference == 2);
                    CHECK(CountFor<ProcessPayment>(system, "order-0103") == 1);
                    CHECK(system.QueueDepth("order-service_error") == 0);
                }
            }
            system.loop().Invoke([&] { system.orders().saga().SetBeforeSaveHook(nullptr); });
        }
    }

    SCENARIO("A message published while the broker is away is not lost") {
        InMemorySystem system;
        system.Submit("order-0113");
        REQUIRE(system.WaitForStatus("order-0113", order_service::OrderStatus::kCompleted));
        system.loop().Invoke([&] { system.transport().SetAvailable(false); });
        CHECK_FALSE(system.Publish(StockReserved{.order_id = "x"_order_id}).ok());
        system.loop().Invoke([&] { system.transport().SetAvailable(true); });
        system.Submit("order-0123");
        REQUIRE(system.WaitForStatus("order-0123", order_service::OrderStatus::kCompleted));
    }

    SCENARIO("The saga's commands belong to the outbox: its event is acked once the state commits") {
        InMemorySystem system;
        // The broker refuses the saga's first CheckInventory: the relay keeps the row and its next
        // sweep publishes it; the OrderSubmitted that caused it is not returned to the queue.
        system.loop().Invoke([&] { system.transport().RejectPublishesTo("Contracts:CheckInventory", 1); });
        system.Submit("order-0133");
        REQUIRE(system.WaitForStatus("order-0133", order_service::OrderStatus::kCompleted));
        CHECK(system.harness().Consumed<OrderSubmitted>(nullptr).size() == 1);
        // Every row goes once the broker has confirmed its message (the last one just after completion).
        CHECK(test_support::WaitFor(
            [&] {
                return system.loop().Invoke([&] { return system.orders().repository().PendingOutbox(10).empty(); });
            },
            5s));
    }
}
