#include "OrderService/SwaggerUi.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <sstream>

#include "Hosting/JsonResponses.h"

namespace order_service {

namespace {

// The page: swagger-ui-dist's bundle, pointed at this service's document.
constexpr const char* kPage = R"html(<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>OrderService API</title>
  <link rel="stylesheet" href="/swagger/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
  </script>
</body>
</html>
)html";

std::optional<std::string> ReadWhole(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream content;
    content << in.rdbuf();
    return content.str();
}

}  // namespace

SwaggerUi::SwaggerUi(const std::string& dist_dir) : dist_dir_(dist_dir) {
    if (dist_dir.empty()) return;
    const std::pair<const char*, const char*> kFiles[] = {{"swagger-ui-bundle.js", "text/javascript; charset=utf-8"},
                                                          {"swagger-ui.css", "text/css; charset=utf-8"}};
    for (const auto& [name, type] : kFiles) {
        auto body = ReadWhole(dist_dir + "/" + name);
        if (!body) {
            spdlog::info("Swagger UI is not served at /swagger: {} has no {} (scripts/install-deps.sh installs it)",
                         dist_dir, name);
            files_.clear();
            return;
        }
        files_[name] = File{type, std::make_shared<const std::string>(std::move(*body))};
    }
}

std::optional<messaging::HttpResponse> SwaggerUi::Answer(const messaging::HttpRequest& request) const {
    static const std::string kPrefix = "/swagger/";
    const std::string& path = request.path;
    const bool page = path == "/swagger" || path == kPrefix || path == "/swagger/index.html";
    if (!page && path.rfind(kPrefix, 0) != 0) return std::nullopt;
    if (request.method != "GET" && request.method != "HEAD") return messaging::MethodNotAllowed(request, "GET");
    if (!installed())
        return messaging::ErrorResponse(404, "not_found",
                                        "Swagger UI is not installed: no swagger-ui-dist in Http.SwaggerUiDir ('" +
                                            dist_dir_ + "'); scripts/install-deps.sh installs it");
    messaging::HttpResponse response;
    if (page) {
        response.content_type = "text/html; charset=utf-8";
        response.body = kPage;
        return response;
    }
    const auto file = files_.find(path.substr(kPrefix.size()));
    if (file == files_.end()) return messaging::ErrorResponse(404, "not_found", "no file " + path);
    response.content_type = file->second.content_type;
    response.shared_body = file->second.body;
    return response;
}

}  // namespace order_service
