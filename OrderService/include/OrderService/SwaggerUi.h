// Swagger UI for the API at /swagger: swagger-ui-dist's script and style (npm, installed by
// scripts/install-deps.sh), read once at start so that no request reads a file on the loop thread,
// and a page of ours that points it at /openapi.json.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "Http/HttpMessage.h"

namespace order_service {

class SwaggerUi {
  public:
    // Reads the files from `dist_dir` (swagger-ui-dist's folder); when it has none of them (not
    // installed, or Http.SwaggerUiDir empty), /swagger answers 404 saying so.
    explicit SwaggerUi(const std::string& dist_dir);

    bool installed() const { return !files_.empty(); }
    // GET /swagger (the page) and /swagger/<file>; nullopt for any other path.
    std::optional<messaging::HttpResponse> Answer(const messaging::HttpRequest& request) const;

  private:
    struct File {
        std::string content_type;
        std::shared_ptr<const std::string> body;  // answered without a copy (the bundle is 1.7 MB)
    };
    std::string dist_dir_;
    std::map<std::string, File> files_;  // by name
};

}  // namespace order_service
