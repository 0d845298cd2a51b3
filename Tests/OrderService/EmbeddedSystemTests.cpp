// The embedded mode's composition: one process, three services, three databases.
#include <doctest/doctest.h>

#include "Embedded/EmbeddedSystem.h"
#include "Support/TestSupport.h"

TEST_SUITE("Embedded mode") {
    TEST_CASE("One Database__Path for the embedded mode gives each service a database of its own") {
        test_support::TempDir dir;
        const std::string shared = dir.File("x.db");
        const auto settings = embedded::EmbeddedSettings::Load(std::string(SAGA_SOURCE_DIR) + "/appsettings",
                                                               {"Database__Path=" + shared});
        CHECK(settings.inventory.database.path == shared);
        auto separated = settings;
        separated.SeparateDatabases();
        CHECK(separated.orders.database.path == shared);
        CHECK(separated.inventory.database.path == dir.File("x-inventory.db"));
        CHECK(separated.payment.database.path == dir.File("x-payment.db"));

        // The system separates whatever it is given, so each service creates and versions its own
        // schema and the start succeeds (with one shared file it failed: "no such table: order_saga").
        messaging::EventLoopThread loop_thread;
        std::unique_ptr<embedded::EmbeddedSystem> system;
        const auto started = loop_thread.loop().Invoke([&] {
            system = std::make_unique<embedded::EmbeddedSystem>(loop_thread.loop(), settings);
            return system->Start();
        });
        CHECK_MESSAGE(started.ok(), started.message());
        loop_thread.loop().Invoke([&] { system.reset(); });
    }

    TEST_CASE("Databases already apart are left where the settings put them") {
        embedded::EmbeddedSettings settings;
        settings.orders.database.path = "/data/orders.db";
        settings.inventory.database.path = "/data/inventory.db";
        settings.payment.database.path = ":memory:";
        settings.SeparateDatabases();
        CHECK(settings.inventory.database.path == "/data/inventory.db");
        CHECK(settings.payment.database.path == ":memory:");
    }
}
