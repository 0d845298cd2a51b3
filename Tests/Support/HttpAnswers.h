// Records the answers a test's HTTP client receives, one JSON object a line, in the file that
// SAGA_HTTP_ANSWERS names (ctest sets it for the HTTP tests), so that the OpenAPI test
// (Tests/OpenApi/check.mjs) checks every one of them against docs/openapi.json.
#pragma once

#include <httplib.h>

namespace test_support {

// From now on every answer `client` receives is appended to the file; nothing when SAGA_HTTP_ANSWERS
// is unset. A JSON body is kept; another body (metrics text, Swagger UI's files) is left out, as the
// document gives it no schema to check.
void RecordAnswersOf(httplib::Client& client);

}  // namespace test_support
