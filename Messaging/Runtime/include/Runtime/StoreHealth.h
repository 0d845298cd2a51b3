// How a service's store is doing, as its own statements last found it: ok; busy (another writer holds
// it, so work waits and nothing is lost); or failing (it refuses reads or writes: a full disk, an I/O
// error, a damaged file), with the store's own words for the problem. /health and /metrics report it.
#pragma once

#include <string>

namespace messaging {

enum class StoreState { kOk, kBusy, kFailing };

// The word /health and the metrics write for a store state: "ok", "busy", "failing".
inline const char* StoreStateName(StoreState state) {
    switch (state) {
        case StoreState::kOk:
            return "ok";
        case StoreState::kBusy:
            return "busy";
        case StoreState::kFailing:
            return "failing";
    }
    return "failing";
}

struct StoreHealth {
    std::string provider;  // the engine, as Database.Provider names it: "sqlite"
    StoreState state = StoreState::kOk;
    std::string detail{};  // what the store said, empty while ok
};

}  // namespace messaging
