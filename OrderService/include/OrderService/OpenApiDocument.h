// The OpenAPI 3.1 document of the HTTP API, docs/openapi.json as the build found it (compiled in), so
// GET /openapi.json serves exactly what the repository holds.
#pragma once

#include <string_view>

namespace order_service {

std::string_view OpenApiDocument();

}  // namespace order_service
