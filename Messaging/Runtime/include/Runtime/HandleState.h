// For the layers that own libuv handles (Runtime, Http, RabbitMq): the base of every object a libuv handle's `data`
// points to, so that the loop's destructor can close and free any handle still open, whoever owns it.
#pragma once

#include <uv.h>

namespace messaging {

// Every handle except the loop's own uv_async and uv_prepare carries a HandleState in handle->data;
// closing the handle frees it, whoever closes it first (the owner, or the loop's destructor). An
// object owns exactly one handle, so that it is freed exactly once.
struct HandleState {
    virtual ~HandleState() = default;
};

// Closes `handle` (once) and deletes its HandleState in the close callback.
inline void CloseAndFree(uv_handle_t* handle) {
    if (uv_is_closing(handle)) return;
    uv_close(handle, [](uv_handle_t* h) { delete static_cast<HandleState*>(h->data); });
}

}  // namespace messaging
