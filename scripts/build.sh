#!/usr/bin/env bash
# Configures and builds into the given directory (default: build). Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
mkdir -p "$dir"
log="$dir/configure.log"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" > "$log" 2>&1 || { cat "$log"; exit 1; }
cmake --build "$dir" -j "${SAGA_JOBS:-2}"
