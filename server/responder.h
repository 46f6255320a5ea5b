// Decides and writes the response to each request: the built-in routes and static files.
// It appends bytes to the connection's output buffer; the connection only moves them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>
#include <optional>
#include <string>
#include <variant>

#include "request_parser.h"
#include "response.h"
#include "router.h"
#include "static_files.h"

namespace deployctl::server {

struct Site {
  std::string whoami;  // body of GET /whoami, with its trailing newline
  std::optional<StaticRoot> root;
  bool debug_endpoints = false;
  std::uint64_t leak_per_request = 0;  // test-only: bytes allocated, touched and kept per request
  std::optional<int> redirect_https_port;  // --redirect-https: 308 to https:// on this port
};

// The response is complete in the buffer.
struct Done {};
// Nothing was written: call respond_after_sleep() once `delay` has passed.
struct SleepThenRespond {
  std::chrono::milliseconds delay;
};
// The head is in the buffer; the caller sends the next `remaining` bytes of `fd` as the body.
struct StreamFile {
  UniqueFd fd;
  std::uint64_t remaining = 0;
};
using Followup = std::variant<Done, SleepThenRespond, StreamFile>;

class Responder {
 public:
  static constexpr std::size_t kInlineFileLimit = 64 * 1024;  // larger files are streamed

  explicit Responder(Site site);

  Followup respond(const http::Request& request, const http::ResponseContext& context,
                   std::string& out) const;
  void respond_after_sleep(std::chrono::milliseconds slept, const http::ResponseContext& context,
                           std::string& out) const;
  void respond_to_parse_error(http::ParseError error, const http::ResponseContext& context,
                              std::string& out) const;

 private:
  Followup respond_with_index(const http::ResponseContext& context, std::string& out) const;
  Followup respond_with_file(std::string_view path, const http::ResponseContext& context,
                             std::string& out) const;
  Followup respond_with(std::variant<OpenedFile, FileError> opened,
                        const http::ResponseContext& context, std::string& out) const;
  const http::FixedResponse& error_response(int status) const;
  void respond_with_redirect(const http::Request& request, const http::ResponseContext& context,
                             std::string& out) const;

  void leak() const;

  Site site_;
  mutable std::vector<std::unique_ptr<char[]>> leaked_;  // --debug-leak-per-request
  http::RouteOptions route_options_;
  http::FixedResponse health_, banner_, whoami_;
  http::FixedResponse bad_request_, forbidden_, not_found_, method_not_allowed_;
  http::FixedResponse header_too_large_, internal_error_, not_implemented_, bad_version_;
};

}  // namespace deployctl::server
