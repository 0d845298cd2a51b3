// InventoryService: wiring only. See InventoryService/README.md.
#include "Hosting/ServiceRunner.h"
#include "InventoryService/InventoryServiceHost.h"

int main(int argc, char** argv) {
    return messaging::RunWorkerMain<inventory_service::InventorySettings, inventory_service::InventoryServiceHost>(
        argc, argv, "InventoryService");
}
