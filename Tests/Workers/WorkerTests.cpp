// InventoryService and PaymentService consumers: the simulation rules and idempotency per orderId
// (a repeated ProcessPayment never charges twice; a repeated ReleaseStock releases once).
#include <doctest/doctest.h>

#include "InventoryService/StockLedger.h"
#include "PaymentService/PaymentLedger.h"
#include "Support/TestSupport.h"

using namespace contracts::literals;

using namespace contracts;
using namespace std::chrono_literals;
using test_support::InMemorySystem;
using test_support::SystemOptions;

TEST_SUITE("Workers") {
    TEST_CASE("A repeated CheckInventory gets the same answer and reserves once") {
        InMemorySystem system(SystemOptions{.start_payment = false});
        REQUIRE(system.Publish(CheckInventory{.order_id = "inv-1"_order_id, .items = {}}).ok());
        REQUIRE(system.Publish(CheckInventory{.order_id = "inv-1"_order_id, .items = {}}).ok());
        REQUIRE(system.harness().WaitUntil([&] { return system.harness().Published<StockReserved>().size() == 2; }));
        CHECK(system.loop().Invoke([&] { return system.inventory().ledger().StatusOf("inv-1"_order_id); }) ==
              inventory_service::ReservationStatus::kReserved);
        REQUIRE(system.Publish(CheckInventory{.order_id = "inv-10"_order_id, .items = {}}).ok());
        REQUIRE(system.harness().WaitPublished<StockShortage>(
            [](const StockShortage& m) { return m.order_id.str() == "inv-10"; }));
        CHECK(system.harness().Published<StockShortage>()[0].reason == "Out of stock");
    }

    TEST_CASE("A repeated ReleaseStock releases once - a release before the reservation blocks it") {
        InMemorySystem system(SystemOptions{.start_payment = false});
        REQUIRE(system.Publish(CheckInventory{.order_id = "inv-2"_order_id, .items = {}}).ok());
        REQUIRE(system.harness().WaitPublished<StockReserved>(nullptr));
        bool first = false, second = true;
        system.loop().Invoke([&] {
            first = system.inventory().ledger().Release("inv-2"_order_id);
            second = system.inventory().ledger().Release("inv-2"_order_id);
        });
        CHECK(first);
        CHECK_FALSE(second);
        REQUIRE(system.Publish(ReleaseStock{.order_id = "inv-3"_order_id, .reason = "cancelled"}).ok());
        REQUIRE(system.harness().WaitPublished<StockReleased>(
            [](const StockReleased& m) { return m.order_id.str() == "inv-3"; }));
        REQUIRE(system.Publish(CheckInventory{.order_id = "inv-3"_order_id, .items = {}}).ok());
        REQUIRE(system.harness().WaitPublished<StockShortage>(
            [](const StockShortage& m) { return m.order_id.str() == "inv-3"; }));
        CHECK(system.harness()
                  .Published<StockReserved>([](const StockReserved& m) { return m.order_id.str() == "inv-3"; })
                  .empty());
    }

    TEST_CASE("A redelivered ProcessPayment never charges twice") {
        InMemorySystem system(SystemOptions{.start_inventory = false});
        const ProcessPayment command{"pay-3"_order_id, *Decimal::Parse("99.99"), "tok"};
        REQUIRE(system.Publish(command).ok());
        REQUIRE(system.Publish(command).ok());
        REQUIRE(system.harness().WaitUntil([&] { return system.harness().Published<PaymentAccepted>().size() == 2; }));
        const auto accepted = system.harness().Published<PaymentAccepted>();
        CHECK(accepted[0].transaction_id == accepted[1].transaction_id);
        CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 1);
        CHECK(system.loop().Invoke([&] { return system.payment().ledger().Find("pay-3"_order_id)->amount; }) ==
              *Decimal::Parse("99.99"));
    }

    TEST_CASE("A declined payment answers PaymentFailed - also when repeated") {
        InMemorySystem system(SystemOptions{.start_inventory = false});
        REQUIRE(system
                    .Publish(ProcessPayment{
                        .order_id = "pay-1"_order_id, .amount = *Decimal::Parse("5"), .card_number = "tok"})
                    .ok());
        REQUIRE(system
                    .Publish(ProcessPayment{
                        .order_id = "pay-1"_order_id, .amount = *Decimal::Parse("5"), .card_number = "tok"})
                    .ok());
        REQUIRE(system.harness().WaitUntil([&] { return system.harness().Published<PaymentFailed>().size() == 2; }));
        CHECK(system.harness().Published<PaymentFailed>()[1].reason == "Credit card limit exceeded");
        CHECK(system.loop().Invoke([&] { return system.payment().ledger().CountCharges(); }) == 0);
    }

    TEST_CASE("A payment of zero is rejected at once without retries") {
        InMemorySystem system(SystemOptions{.start_inventory = false});
        REQUIRE(system
                    .Publish(ProcessPayment{
                        .order_id = "pay-zero"_order_id, .amount = *Decimal::Parse("0"), .card_number = "tok"})
                    .ok());
        REQUIRE(system.harness().WaitUntil([&] { return system.QueueDepth("payment-service_error") == 1; }));
        CHECK(system.loop().Invoke([&] { return system.payment().gateway_calls(); }) == 0);
    }

    TEST_CASE("A worker refuses a ledger written by a newer build") {
        messaging::SqliteDatabase inventory_db(":memory:");
        inventory_db.SetUserVersion(7);
        CHECK_THROWS_WITH(inventory_service::StockLedger{inventory_db},
                          doctest::Contains("newer than this InventoryService"));
        messaging::SqliteDatabase payment_db(":memory:");
        payment_db.SetUserVersion(7);
        CHECK_THROWS_WITH(payment_service::PaymentLedger{payment_db},
                          doctest::Contains("newer than this PaymentService"));
    }
}
