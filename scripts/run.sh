#!/usr/bin/env bash
# The run command: installs what is missing, builds, starts a local RabbitMQ with the management UI
# (http://localhost:15672, guest/guest) and the three services, and stops them all on Ctrl-C.
#   scripts/run.sh               three services on RabbitMQ
#   scripts/run.sh --in-memory   all three in one process on the in-memory bus, no broker
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# The three services only: the test suites, the MassTransit twin and the benchmark are not needed to
# run the system (scripts/test.sh builds them in trees of their own).
scripts/build.sh build -DSAGA_BUILD_TESTS=OFF -DSAGA_BUILD_BENCH=OFF

if [ "${1:-}" = "--in-memory" ]; then
    echo "POST orders to http://localhost:5000/order, read them at http://localhost:5000/order/{orderId}"
    exec build/OrderService/OrderService --in-memory --config appsettings/OrderService.json
fi

mkdir -p data/logs
started_broker=no
if (exec 3<> /dev/tcp/127.0.0.1/5672) 2> /dev/null; then
    echo "A broker already listens on localhost:5672; using it (its management UI may be off)."
else
    scripts/broker.sh start data/broker 5672 15672
    started_broker=yes
fi

pids=()
stop_all() {
    trap - INT TERM EXIT
    echo "stopping..."
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2> /dev/null || true; done
    if [ "$started_broker" = yes ]; then scripts/broker.sh stop data/broker; fi
    exit 0
}
trap stop_all INT TERM EXIT

for service in InventoryService PaymentService OrderService; do
    "build/$service/$service" --config "appsettings/$service.json" > "data/logs/$service.log" 2>&1 &
    pids+=($!)
done

cat <<TEXT

The system is running (logs in data/logs/):
  POST an order:   curl -i -X POST http://localhost:5000/order -H 'Content-Type: application/json' \\
                     -d '{"orderId":"demo-3","customerNumber":"CUST-1","totalAmount":"149.97"}'
  read it back:    curl http://localhost:5000/order/demo-3
  watch the queues: http://localhost:15672  (guest / guest)
  health:          curl http://localhost:5000/health   (workers: :5001 and :5002, /health, /health/ready)
An id ending in 3 completes; 0 runs out of stock; 1 is declined; 2 exhausts the payment retries.
Press Ctrl-C to stop everything.
TEXT
wait -n "${pids[@]}" || true
echo "a service exited; see data/logs/"
