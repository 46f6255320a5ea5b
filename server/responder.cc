#include "responder.h"

#include <cstring>

#include "http_date.h"
#include "redirect.h"

namespace deployctl::server {
namespace {

constexpr std::string_view kText = "text/plain; charset=utf-8";

}  // namespace

Responder::Responder(Site site)
    : site_(std::move(site)),
      route_options_{site_.root.has_value(), site_.debug_endpoints,
                     site_.redirect_https_port.has_value()},
      health_(200, kText, "ok\n"),
      banner_(200, kText, "deploy-server\n"),
      whoami_(200, kText, site_.whoami),
      bad_request_(400, kText, "bad request\n"),
      forbidden_(403, kText, "forbidden\n"),
      not_found_(404, kText, "not found\n"),
      method_not_allowed_(405, kText, "method not allowed\n", "Allow: GET, HEAD\r\n"),
      header_too_large_(431, kText, "request header fields too large\n"),
      internal_error_(500, kText, "internal server error\n"),
      not_implemented_(501, kText, "not implemented\n"),
      bad_version_(505, kText, "HTTP version not supported\n") {}

const http::FixedResponse& Responder::error_response(int status) const {
  switch (status) {
    case 403:
      return forbidden_;
    case 404:
      return not_found_;
    case 405:
      return method_not_allowed_;
    case 431:
      return header_too_large_;
    case 500:
      return internal_error_;
    case 501:
      return not_implemented_;
    case 505:
      return bad_version_;
    default:
      return bad_request_;
  }
}

void Responder::leak() const {
  leaked_.push_back(std::make_unique<char[]>(site_.leak_per_request));
  std::memset(leaked_.back().get(), 1, site_.leak_per_request);  // touched: resident
}

Followup Responder::respond(const http::Request& request, const http::ResponseContext& context,
                            std::string& out) const {
  if (site_.leak_per_request) leak();
  http::Route route = http::route(request, route_options_);
  switch (route.kind) {
    case http::RouteKind::health:
      health_.append_to(out, context);
      break;
    case http::RouteKind::whoami:
      whoami_.append_to(out, context);
      break;
    case http::RouteKind::not_found:
      not_found_.append_to(out, context);
      break;
    case http::RouteKind::bad_request:
      bad_request_.append_to(out, context);
      break;
    case http::RouteKind::method_not_allowed:
      method_not_allowed_.append_to(out, context);
      break;
    case http::RouteKind::sleep:
      return SleepThenRespond{std::chrono::milliseconds(route.sleep_ms)};
    case http::RouteKind::static_file:
      return respond_with_file(request.path, context, out);
    case http::RouteKind::index:
      return respond_with_index(context, out);
    case http::RouteKind::redirect_https:
      respond_with_redirect(request, context, out);
      break;
  }
  return Done{};
}

Followup Responder::respond_with_index(const http::ResponseContext& context,
                                       std::string& out) const {
  if (site_.root) {
    auto opened = site_.root->open_file("/");
    auto* error = std::get_if<FileError>(&opened);
    if (error == nullptr || *error != FileError::not_found) {
      return respond_with(std::move(opened), context, out);
    }
  }
  banner_.append_to(out, context);
  return Done{};
}

Followup Responder::respond_with_file(std::string_view path, const http::ResponseContext& context,
                                      std::string& out) const {
  return respond_with(site_.root->open_file(path), context, out);
}

Followup Responder::respond_with(std::variant<OpenedFile, FileError> opened,
                                 const http::ResponseContext& context, std::string& out) const {
  if (auto* error = std::get_if<FileError>(&opened)) {
    int status = *error == FileError::not_found ? 404 : *error == FileError::forbidden ? 403 : 400;
    error_response(status).append_to(out, context);
    return Done{};
  }
  OpenedFile& file = std::get<OpenedFile>(opened);
  std::string last_modified = "Last-Modified: ";
  last_modified.append(http::view(http::format_http_date(file.modified)));
  last_modified.append("\r\n");
  std::size_t before = out.size();
  http::append_head(out, 200, file.content_type, file.size, last_modified, context);
  if (context.head_only || file.size == 0) return Done{};
  if (file.size > kInlineFileLimit) return StreamFile{std::move(file.fd), file.size};
  if (!append_file_bytes(file.fd.get(), static_cast<std::size_t>(file.size), out)) {
    out.resize(before);
    internal_error_.append_to(out, context);
  }
  return Done{};
}

void Responder::respond_with_redirect(const http::Request& request,
                                      const http::ResponseContext& context,
                                      std::string& out) const {
  std::optional<std::string> location =
      http::https_location(request, site_.redirect_https_port.value_or(443));
  if (!location) return bad_request_.append_to(out, context);
  const std::string_view body = "moved to https\n";
  http::append_head(out, 308, kText, body.size(), "Location: " + *location + "\r\n", context);
  if (!context.head_only) out.append(body);
}

void Responder::respond_after_sleep(std::chrono::milliseconds slept,
                                    const http::ResponseContext& context, std::string& out) const {
  std::string body = "slept " + std::to_string(slept.count()) + " ms\n";
  http::append_head(out, 200, kText, body.size(), {}, context);
  if (!context.head_only) out.append(body);
}

void Responder::respond_to_parse_error(http::ParseError error, const http::ResponseContext& context,
                                       std::string& out) const {
  error_response(http::status_code(error)).append_to(out, context);
}

}  // namespace deployctl::server
