// PaymentService: wiring only. See PaymentService/README.md.
#include "Hosting/ServiceRunner.h"
#include "PaymentService/PaymentServiceHost.h"

int main(int argc, char** argv) {
    return messaging::RunWorkerMain<payment_service::PaymentSettings, payment_service::PaymentServiceHost>(
        argc, argv, "PaymentService");
}
