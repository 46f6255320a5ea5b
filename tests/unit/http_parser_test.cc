// deploy-server's pure HTTP code: the incremental request parser, responses, routing, paths,
// dates and options.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "content_type.h"
#include "http_date.h"
#include "input_buffer.h"
#include "redirect.h"
#include "request_parser.h"
#include "response.h"
#include "router.h"
#include "server_options.h"
#include "url_path.h"

using namespace deployctl::http;

namespace {

// The parts of a Request worth comparing, copied out of the parser's views.
struct Seen {
  std::string method;
  std::string target;
  std::string path;
  std::string query;
  int minor_version = 0;
  bool keep_alive = false;
  std::uint64_t content_length = 0;
  std::vector<std::pair<std::string, std::string>> headers;

  bool operator==(const Seen&) const = default;
};

Seen seen(const Request& request) {
  Seen out{std::string(request.method_name),
           std::string(request.target),
           std::string(request.path),
           std::string(request.query),
           request.minor_version,
           request.keep_alive,
           request.content_length,
           {}};
  for (const auto& header : request.headers) {
    out.headers.emplace_back(std::string(header.name), std::string(header.value));
  }
  return out;
}

struct Outcome {
  std::vector<Seen> requests;
  ParseError error = ParseError::none;
  std::size_t unconsumed = 0;  // bytes left in the caller's buffer at the end
};

// Plays the caller's part: receives `stream` in chunks of `chunk` bytes, keeps the unconsumed
// bytes, and calls parse() until it needs more.
Outcome feed(std::string_view stream, std::size_t chunk, ParserLimits limits = {}) {
  RequestParser parser(limits);
  Outcome outcome;
  std::string buffer;
  for (std::size_t at = 0; at < stream.size() && outcome.error == ParseError::none; at += chunk) {
    buffer.append(stream.substr(at, chunk));
    for (;;) {
      ParseResult result = parser.parse(buffer);
      REQUIRE(result.consumed <= buffer.size());
      if (result.status == ParseStatus::request) outcome.requests.push_back(seen(result.request));
      buffer.erase(0, result.consumed);
      if (result.status == ParseStatus::error) outcome.error = result.error;
      if (result.status != ParseStatus::request) break;
    }
  }
  outcome.unconsumed = buffer.size();
  return outcome;
}

Outcome feed_whole(std::string_view stream) { return feed(stream, stream.size()); }

ParseError error_of(std::string_view stream) { return feed_whole(stream).error; }

const std::string kSimple =
    "GET /index.html?x=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: t\r\n\r\n";

}  // namespace

TEST_CASE("http: a complete GET request is parsed in one call") {
  RequestParser parser;
  ParseResult result = parser.parse(kSimple);
  REQUIRE(result.status == ParseStatus::request);
  CHECK(result.consumed == kSimple.size());
  const Request& request = result.request;
  CHECK(request.method == Method::get);
  CHECK(request.method_name == "GET");
  CHECK(request.target == "/index.html?x=1");
  CHECK(request.path == "/index.html");
  CHECK(request.query == "x=1");
  CHECK(request.minor_version == 1);
  CHECK(request.keep_alive);
  CHECK(request.content_length == 0);
  REQUIRE(request.headers.size() == 2);
  CHECK(request.headers[0].name == "Host");
  CHECK(request.headers[0].value == "example");
  CHECK(request.headers[1].name == "User-Agent");
  CHECK_FALSE(parser.mid_request());
}

TEST_CASE("http: feeding byte by byte gives the same request, only at the last byte") {
  RequestParser parser;
  std::string buffer;
  for (std::size_t i = 0; i < kSimple.size(); ++i) {
    buffer.push_back(kSimple[i]);
    ParseResult result = parser.parse(buffer);
    if (i + 1 < kSimple.size()) {
      REQUIRE(result.status == ParseStatus::need_more);
      CHECK(parser.mid_request());
    } else {
      REQUIRE(result.status == ParseStatus::request);
      CHECK(seen(result.request) == feed_whole(kSimple).requests.at(0));
    }
    buffer.erase(0, result.consumed);  // the request views the buffer: drop bytes after use
  }
  CHECK(buffer.empty());
}

TEST_CASE("http: every chunking of a pipelined stream with bodies yields the same requests") {
  std::string stream =
      "\r\n"  // an empty line before a request line is ignored
      "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
      "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
      "HEAD /b?q HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
      "PUT /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
      "GET /d HTTP/1.1\nHost: h\n\n";  // bare LF line ends
  Outcome whole = feed_whole(stream);
  REQUIRE(whole.error == ParseError::none);
  REQUIRE(whole.requests.size() == 5);
  CHECK(whole.requests[0].method == "POST");
  CHECK(whole.requests[0].content_length == 11);
  CHECK(whole.requests[1].path == "/a");
  CHECK(whole.requests[2].method == "HEAD");
  CHECK(whole.requests[2].query == "q");
  CHECK(whole.requests[2].keep_alive);
  CHECK_FALSE(whole.requests[3].keep_alive);
  CHECK(whole.requests[4].path == "/d");
  CHECK(whole.unconsumed == 0);
  for (std::size_t chunk : {1, 2, 3, 5, 7, 13, 64}) {
    CAPTURE(chunk);
    Outcome pieces = feed(stream, chunk);
    CHECK(pieces.error == ParseError::none);
    CHECK(pieces.requests == whole.requests);
    CHECK(pieces.unconsumed == 0);
  }
}

TEST_CASE("http: a body is consumed across calls and never returned as a request") {
  RequestParser parser;
  ParseResult head = parser.parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n12");
  REQUIRE(head.status == ParseStatus::request);
  CHECK(head.consumed == 48);  // the header block only
  ParseResult part = parser.parse("12");
  CHECK(part.status == ParseStatus::need_more);
  CHECK(part.consumed == 2);
  CHECK(parser.mid_request());
  ParseResult rest = parser.parse("34567890GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  REQUIRE(rest.status == ParseStatus::request);
  CHECK(rest.consumed == 8 + 27);
  CHECK(rest.request.method == Method::get);
}

TEST_CASE("http: keep-alive follows the version and the Connection field") {
  auto keep_alive = [](std::string_view head) {
    Outcome outcome = feed_whole(std::string(head) + "\r\n");
    REQUIRE(outcome.requests.size() == 1);
    return outcome.requests[0].keep_alive;
  };
  CHECK(keep_alive("GET / HTTP/1.1\r\nHost: h\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.0\r\n"));
  CHECK(keep_alive("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n"));
  CHECK_FALSE(keep_alive("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n"));
  CHECK(keep_alive("GET / HTTP/1.9\r\nHost: h\r\n"));  // a later 1.x is treated as 1.1
}

TEST_CASE("http: persistence of the response") {
  RequestParser parser;
  auto parse = [&](std::string_view text) {
    parser = RequestParser();
    ParseResult result = parser.parse(text);
    REQUIRE(result.status == ParseStatus::request);
    return result.request;
  };
  Request http11 = parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(persistence_for(http11, false) == Persistence::keep_alive);
  CHECK(persistence_for(http11, true) == Persistence::close);
  Request http10 = parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(persistence_for(http10, false) == Persistence::keep_alive_http10);
  Request waits = parse(
      "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
      "Content-Length: 5\r\n\r\n");
  CHECK(waits.expects_continue);
  CHECK_FALSE(body_framing_allows_reuse(waits));
  CHECK(persistence_for(waits, false) == Persistence::close);
}

TEST_CASE("http: the header block limit is exact") {
  ParserLimits limits{.max_header_bytes = 64, .max_headers = 100};
  std::string head = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  std::string exact = head + std::string(64 - head.size() - 4, 'a') + "\r\n\r\n";
  REQUIRE(exact.size() == 64);
  CHECK(feed(exact, 1, limits).requests.size() == 1);
  std::string over = head + std::string(64 - head.size() - 3, 'a') + "\r\n\r\n";
  CHECK(feed(over, 1, limits).error == ParseError::header_too_large);
  CHECK(feed(over, over.size(), limits).error == ParseError::header_too_large);
}

TEST_CASE("http: a header block that never ends is rejected once it reaches the limit") {
  RequestParser parser;  // default: 16 KiB
  std::string endless = "GET / HTTP/1.1\r\nX: " + std::string(16 * 1024, 'a');
  ParseResult result = parser.parse(std::string_view(endless).substr(0, 16 * 1024 - 1));
  CHECK(result.status == ParseStatus::need_more);
  result = parser.parse(endless);
  CHECK(result.status == ParseStatus::error);
  CHECK(result.error == ParseError::header_too_large);
  CHECK(status_code(result.error) == 431);
}

TEST_CASE("http: too many header fields") {
  std::string request = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 99; ++i) request += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(feed_whole(request + "\r\n").requests.at(0).headers.size() == 100);
  CHECK(error_of(request + "X-last: v\r\n\r\n") == ParseError::header_too_large);
}

TEST_CASE("http: malformed requests are rejected with 400") {
  const char* bad[] = {
      "GET /\r\n\r\n",                                      // no version
      "GET / HTTP/1\r\nHost: h\r\n\r\n",                    // truncated version
      "GET / http/1.1\r\nHost: h\r\n\r\n",                  // lowercase protocol name
      "GET / HTTP/1.1 \r\nHost: h\r\n\r\n",                 // trailing space
      "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",                 // two spaces
      "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",                  // not a token
      "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n",             // control character in target
      "GET / HTTP/1.1\r\nHost : h\r\n\r\n",                 // space before the colon
      "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",       // obsolete line folding
      "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",       // field without a colon
      "GET / HTTP/1.1\r\nHost: h\r\n: empty name\r\n\r\n",  // empty field name
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",      // DEL in a value
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",       // bare CR in a value
      "GET / HTTP/1.1\r\n\r\n",                             // HTTP/1.1 without Host
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",       // two Host fields
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",  // stray CR before the request
  };
  for (const char* text : bad) {
    CAPTURE(text);
    CHECK(error_of(text) == ParseError::bad_request);
  }
  // Repeating an identical Content-Length is allowed.
  CHECK(error_of("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n") ==
        ParseError::none);
}

TEST_CASE("http: Transfer-Encoding is not implemented; HTTP/2 is not supported") {
  CHECK(error_of("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") ==
        ParseError::not_implemented);
  CHECK(status_code(ParseError::not_implemented) == 501);
  CHECK(error_of("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == ParseError::version_not_supported);
  CHECK(status_code(ParseError::version_not_supported) == 505);
}

TEST_CASE("http: after an error the parser stays failed and consumes nothing") {
  RequestParser parser;
  ParseResult first = parser.parse("BAD\r\n\r\n");
  REQUIRE(first.status == ParseStatus::error);
  CHECK_FALSE(first.detail.empty());
  ParseResult again = parser.parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(again.status == ParseStatus::error);
  CHECK(again.consumed == 0);
  CHECK(parser.failed());
}

TEST_CASE("http: absolute-form targets are reduced to their path") {
  auto path_and_query = [](std::string_view target) {
    Outcome outcome = feed_whole("GET " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(outcome.requests.size() == 1);
    return outcome.requests[0].path + "|" + outcome.requests[0].query;
  };
  CHECK(path_and_query("http://example.com/a/b?c=d") == "/a/b|c=d");
  CHECK(path_and_query("HTTPS://example.com") == "/|");
  CHECK(path_and_query("http://example.com?x") == "/|x");
  CHECK(path_and_query("/plain") == "/plain|");
  CHECK(path_and_query("*") == "*|");
}

TEST_CASE("http: field values are trimmed and methods are case-sensitive") {
  Outcome outcome = feed_whole("get / HTTP/1.1\r\nHost: \t h \t\r\n\r\n");
  REQUIRE(outcome.requests.size() == 1);
  CHECK(outcome.requests[0].headers[0].second == "h");
  RequestParser parser;
  CHECK(parser.parse("get / HTTP/1.1\r\nHost: h\r\n\r\n").request.method == Method::other);
}

TEST_CASE("http: fixed responses serialise exactly, with Date and Connection varying") {
  FixedResponse ok(200, "text/plain", "ok\n");
  std::string out;
  std::string date = "Sun, 06 Nov 1994 08:49:37 GMT";
  ok.append_to(out, ResponseContext{date, Persistence::keep_alive, false});
  CHECK(out ==
        "HTTP/1.1 200 OK\r\nServer: deploy-server\r\nContent-Type: text/plain\r\n"
        "Content-Length: 3\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nok\n");
  out.clear();
  ok.append_to(out, ResponseContext{date, Persistence::close, true});
  CHECK(out.find("Connection: close\r\n") != std::string::npos);
  CHECK(out.ends_with("GMT\r\n\r\n"));  // HEAD: no body, same Content-Length
  CHECK(out.find("Content-Length: 3\r\n") != std::string::npos);
  out.clear();
  ok.append_to(out, ResponseContext{date, Persistence::keep_alive_http10, false});
  CHECK(out.find("Connection: keep-alive\r\n") != std::string::npos);

  FixedResponse not_allowed(405, "text/plain", "no\n", "Allow: GET, HEAD\r\n");
  out.clear();
  not_allowed.append_to(out, ResponseContext{date, Persistence::keep_alive, false});
  CHECK(out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
  CHECK(out.find("\r\nAllow: GET, HEAD\r\n") != std::string::npos);
}

TEST_CASE("http: append_head announces the body length") {
  std::string out = "previous";
  append_head(out, 404, "text/html", 123456789012, "X-A: b\r\n",
              ResponseContext{"D", Persistence::keep_alive, false});
  CHECK(out ==
        "previousHTTP/1.1 404 Not Found\r\nServer: deploy-server\r\nContent-Type: text/html\r\n"
        "Content-Length: 123456789012\r\nX-A: b\r\nDate: D\r\n\r\n");
  CHECK(reason_phrase(431) == "Request Header Fields Too Large");
}

TEST_CASE("http: dates are IMF-fixdate") {
  CHECK(view(format_http_date(0)) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(view(format_http_date(784111777)) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(view(format_http_date(951782400)) == "Tue, 29 Feb 2000 00:00:00 GMT");
  CHECK(view(format_http_date(4102444799)) == "Thu, 31 Dec 2099 23:59:59 GMT");
}

TEST_CASE("http: content types by extension") {
  CHECK(content_type_for("/a/index.html") == "text/html; charset=utf-8");
  CHECK(content_type_for("STYLE.CSS") == "text/css; charset=utf-8");
  CHECK(content_type_for("/x/app.js") == "text/javascript; charset=utf-8");
  CHECK(content_type_for("/img.PNG") == "image/png");
  CHECK(content_type_for("/noext") == "application/octet-stream");
  CHECK(content_type_for("/dir.html/file") == "application/octet-stream");
  CHECK(content_type_for("/.html") == "application/octet-stream");  // a dotfile, not an extension
}

TEST_CASE("http: request paths are percent-decoded and checked") {
  CHECK(decode_request_path("/a%20b/c%2Fd").path == "/a b/c/d");
  CHECK(decode_request_path("/x%41%4a").path == "/xAJ");
  CHECK(decode_request_path("/a/..b/c..").error == PathError::none);
  CHECK(decode_request_path("/a/../b").error == PathError::dot_dot_segment);
  CHECK(decode_request_path("/..").error == PathError::dot_dot_segment);
  CHECK(decode_request_path("/%2e%2e/etc/passwd").error == PathError::dot_dot_segment);
  CHECK(decode_request_path("/a%2F..%2Fb").error == PathError::dot_dot_segment);
  CHECK(decode_request_path("/a%00b").error == PathError::nul_byte);
  CHECK(decode_request_path("/a%zz").error == PathError::bad_escape);
  CHECK(decode_request_path("/a%4").error == PathError::bad_escape);
  CHECK(decode_request_path("/a%").error == PathError::bad_escape);
  CHECK(decode_request_path("relative").error == PathError::not_absolute);
  CHECK(decode_request_path("").error == PathError::not_absolute);
}

TEST_CASE("http: routes") {
  auto kind = [](std::string_view text, RouteOptions options = {}) {
    RequestParser parser;
    ParseResult result = parser.parse(text);
    REQUIRE(result.status == ParseStatus::request);
    return route(result.request, options);
  };
  auto get = [](std::string_view target) {
    return "GET " + std::string(target) + " HTTP/1.1\r\nHost: h\r\n\r\n";
  };
  CHECK(kind(get("/healthz")).kind == RouteKind::health);
  CHECK(kind(get("/healthz?verbose")).kind == RouteKind::health);
  CHECK(kind("HEAD /whoami HTTP/1.1\r\nHost: h\r\n\r\n").kind == RouteKind::whoami);
  CHECK(kind(get("/")).kind == RouteKind::index);
  CHECK(kind(get("/file.txt")).kind == RouteKind::not_found);
  CHECK(kind(get("/file.txt"), {.has_root = true}).kind == RouteKind::static_file);
  CHECK(kind("POST /healthz HTTP/1.1\r\nHost: h\r\n\r\n").kind == RouteKind::method_not_allowed);
  CHECK(kind("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n").kind == RouteKind::method_not_allowed);
  CHECK(kind(get("*")).kind == RouteKind::bad_request);
  RouteOptions debug{.debug_endpoints = true};
  CHECK(kind(get("/sleep/300")).kind == RouteKind::not_found);  // only with debug endpoints
  Route sleep = kind(get("/sleep/300"), debug);
  CHECK(sleep.kind == RouteKind::sleep);
  CHECK(sleep.sleep_ms == 300);
  CHECK(kind(get("/sleep/10000"), debug).sleep_ms == 10000);
  CHECK(kind(get("/sleep/10001"), debug).kind == RouteKind::bad_request);
  CHECK(kind(get("/sleep/99999999999999"), debug).kind == RouteKind::bad_request);
  CHECK(kind(get("/sleep/abc"), debug).kind == RouteKind::not_found);
  CHECK(kind(get("/sleep/"), debug).kind == RouteKind::not_found);
}

TEST_CASE("http: --redirect-https routes and Location") {
  auto parsed = [](std::string_view text) {
    static RequestParser parser;
    parser = RequestParser();
    ParseResult result = parser.parse(text);
    REQUIRE(result.status == ParseStatus::request);
    return result.request;
  };
  const RouteOptions redirect{.has_root = true, .redirect_https = true};
  CHECK(route(parsed("GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a.test\r\n\r\n"),
              redirect).kind == RouteKind::static_file);
  CHECK(route(parsed("POST /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: a\r\n\r\n"),
              redirect).kind == RouteKind::redirect_https);
  CHECK(route(parsed("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"), redirect).kind ==
        RouteKind::redirect_https);
  CHECK(route(parsed("GET /.well-known/acme-challenge/t HTTP/1.1\r\nHost: a\r\n\r\n"),
              {.redirect_https = true}).kind == RouteKind::not_found);

  CHECK(https_location(parsed("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: app.test:8080\r\n\r\n"),
                       8443) == "https://app.test:8443/a/b?x=1&y=2");
  CHECK(https_location(parsed("GET /p HTTP/1.1\r\nhost: app.test\r\n\r\n"), 443) ==
        "https://app.test/p");
  CHECK(https_location(parsed("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"), 443) ==
        "https://[::1]/");
  CHECK(https_location(parsed("GET http://other.test/x?q HTTP/1.1\r\nHost: a.test\r\n\r\n"),
                       443) == "https://a.test/x?q");
  CHECK_FALSE(https_location(parsed("GET / HTTP/1.0\r\n\r\n"), 443));  // no Host
  CHECK_FALSE(https_location(parsed("GET / HTTP/1.1\r\nHost: a/b@evil\r\n\r\n"), 443));
  CHECK_FALSE(https_location(parsed("GET / HTTP/1.1\r\nHost: :80\r\n\r\n"), 443));
}

TEST_CASE("http: server options") {
  using namespace deployctl::server;
  auto parse = [](std::vector<std::string_view> args) { return parse_options(args); };
  OptionsResult defaults = parse({});
  REQUIRE(defaults.error.empty());
  REQUIRE(defaults.options.listen.size() == 1);
  CHECK(defaults.options.listen[0].host == "127.0.0.1");
  CHECK(defaults.options.listen[0].port == 8000);

  OptionsResult full = parse(
      {"--listen", "127.0.0.1:9000", "--listen=[::1]:9001", "--root", "/srv", "--debug-endpoints"});
  REQUIRE(full.error.empty());
  REQUIRE(full.options.listen.size() == 2);
  CHECK(full.options.listen[1].host == "::1");
  CHECK(full.options.listen[1].port == 9001);
  CHECK(full.options.root == "/srv");
  CHECK(parse({"--redirect-https", "8443"}).options.redirect_https_port == 8443);
  CHECK(parse({"--redirect-https", "0"}).error.find("--redirect-https") != std::string::npos);
  CHECK(full.options.debug_endpoints);

  CHECK(parse({"--listen", "localhost:80"}).options.listen.at(0).host == "127.0.0.1");
  CHECK(defaults.options.idle_timeout_seconds == 60);
  CHECK(parse({"--idle-timeout", "5"}).options.idle_timeout_seconds == 5);
  CHECK(parse({"--idle-timeout=86400"}).options.idle_timeout_seconds == 86400);
  CHECK_FALSE(parse({"--idle-timeout", "0"}).error.empty());
  CHECK_FALSE(parse({"--idle-timeout", "1.5"}).error.empty());
  CHECK(parse({"--help"}).options.help);
  CHECK(parse({"--version"}).options.version);
  CHECK_FALSE(parse({"--bogus"}).error.empty());
  CHECK_FALSE(parse({"--listen"}).error.empty());
  CHECK_FALSE(parse({"--root"}).error.empty());
  CHECK_FALSE(parse({"--help=yes"}).error.empty());
  std::string error;
  CHECK_FALSE(parse_listen_flag("example.com:80", &error));
  CHECK(error.find("numeric") != std::string::npos);
  CHECK_FALSE(parse_listen_flag("127.0.0.1:65536", &error));
  CHECK_FALSE(parse_listen_flag("127.0.0.1", &error));
  CHECK_FALSE(parse_listen_flag("::1:80", &error));
  CHECK_FALSE(parse_listen_flag("[127.0.0.1]:80", &error));
  CHECK(parse_listen_flag("0.0.0.0:0", &error)->port == 0);
}

TEST_CASE("http: the input buffer compacts and grows only when full") {
  InputBuffer buffer(2048, 8192);
  auto room = buffer.prepare();
  REQUIRE(room.size() == 2048);
  std::fill(room.begin(), room.end(), 'a');
  buffer.commit(2048);
  buffer.consume(2000);
  CHECK(buffer.data().size() == 48);
  room = buffer.prepare();  // tail full, head free: compacts instead of growing
  CHECK(buffer.capacity() == 2048);
  CHECK(room.size() == 2000);
  CHECK(buffer.data() == std::string(48, 'a'));
  buffer.commit(room.size());
  room = buffer.prepare();  // full: grows
  CHECK(buffer.capacity() == 4096);
  CHECK(room.size() == 2048);
  buffer.commit(2048);
  buffer.prepare();
  buffer.commit(4096);
  CHECK(buffer.prepare().empty());  // at the maximum and full
  buffer.consume(buffer.data().size());
  CHECK(buffer.empty());
  CHECK(buffer.prepare().size() == 8192);
}
