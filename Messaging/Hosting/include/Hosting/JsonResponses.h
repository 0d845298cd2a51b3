// The JSON answers every HTTP listener of the services shares: a body with its status, the error shape
// {"error", "message", "field"?}, 405 with its Allow header, and the answers the server makes on its
// own (a request it could not read, one that took too long).
#pragma once

#include <string>

#include "Contracts/JsonFields.h"
#include "Http/HttpMessage.h"

namespace messaging {

HttpResponse JsonResponse(int status, const contracts::OrderedJson& body);
HttpResponse ErrorResponse(int status, const std::string& error, const std::string& message,
                           const std::string& field = {});
HttpResponse MethodNotAllowed(const HttpRequest& request, const std::string& allowed);
// The HttpErrorWriter of the services' servers: 400, 408, 413, 431 and 503 with their error words.
HttpResponse ServerErrorResponse(int status, const std::string& message);

}  // namespace messaging
