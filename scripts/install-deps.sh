#!/usr/bin/env bash
# Installs the Debian 12 packages the build, the tests and the broker need. In CI (CI=true), or
# when any package is missing, it runs `apt-get update` and `apt-get install`; otherwise it is quick.
set -euo pipefail

packages=(
    build-essential cmake pkg-config git curl ca-certificates
    librabbitmq-dev libuv1-dev libsqlite3-dev nlohmann-json3-dev libcpp-httplib-dev libspdlog-dev doctest-dev
    rabbitmq-server
    prometheus  # promtool checks every service's /metrics in the tests
    python3 gnuplot-nox  # bench/run.sh's report and plot
    linux-perf  # bench/broker_profile.sh counts the broker's system calls
    nodejs  # the OpenAPI test (Tests/OpenApi) and Swagger UI's files (OrderService/SwaggerUi)
    chromium  # the Swagger UI test drives it headless
)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "install ok installed" || missing+=("$package")
done

if [ "${CI:-}" = "true" ] || [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    # A fresh install of rabbitmq-server may start the system broker on 5672; ours use their own nodes.
    $sudo apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

# npm comes with some Node.js builds and is a package of its own in Debian's.
if ! command -v npm > /dev/null; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get install -y -q --no-install-recommends npm
fi
# Swagger UI's files, which OrderService serves at /swagger, and the OpenAPI and browser tests'
# packages, at the versions their package-lock.json files pin.
root="$(cd "$(dirname "$0")/.." && pwd)"
for project in OrderService/SwaggerUi Tests/OpenApi; do
    if [ "${CI:-}" = "true" ] || [ ! -d "$root/$project/node_modules" ]; then
        npm ci --prefix "$root/$project" --no-audit --no-fund --loglevel=error
    fi
done
