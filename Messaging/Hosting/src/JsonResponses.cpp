#include "Hosting/JsonResponses.h"

namespace messaging {

HttpResponse JsonResponse(int status, const contracts::OrderedJson& body) {
    HttpResponse response;
    response.status = status;
    response.body = body.dump();
    return response;
}

HttpResponse ErrorResponse(int status, const std::string& error, const std::string& message, const std::string& field) {
    contracts::OrderedJson body;
    body["error"] = error;
    body["message"] = message;
    if (!field.empty()) body["field"] = field;
    return JsonResponse(status, body);
}

HttpResponse MethodNotAllowed(const HttpRequest& request, const std::string& allowed) {
    HttpResponse response =
        ErrorResponse(405, "method_not_allowed", request.method + " is not served on " + request.path);
    response.headers.emplace_back("Allow", allowed);
    return response;
}

HttpResponse ServerErrorResponse(int status, const std::string& message) {
    switch (status) {
        case 400:
            return ErrorResponse(400, "bad_request", "the request could not be read: " + message);
        case 408:
            return ErrorResponse(408, "request_timeout", message);
        case 413:
            return ErrorResponse(413, "payload_too_large", message);
        case 431:
            return ErrorResponse(431, "headers_too_large", message);
        case 503:
            return ErrorResponse(503, "unavailable", message);
        default:
            return ErrorResponse(status, "error", message);
    }
}

}  // namespace messaging
