// libFuzzer target for deploy-server's request parser. The input is split into chunks (the
// first byte picks the chunk size) and fed the way a connection does; the fuzzer checks the
// parser's contract: consumed never exceeds the input, requests view only the input, the
// same stream gives the same requests however it is chunked, and errors are sticky.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "request_parser.h"
#include "router.h"
#include "url_path.h"

namespace {

using namespace deployctl::http;

void require(bool condition) {
  if (!condition) std::abort();
}

bool inside(std::string_view part, std::string_view whole) {
  return part.empty() ||
         (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

void check_request(const Request& request, std::string_view input) {
  require(inside(request.method_name, input) && inside(request.target, input));
  require(request.path == "/" || inside(request.path, input));
  require(inside(request.query, input));
  for (const auto& header : request.headers) {
    require(inside(header.name, input) && inside(header.value, input));
  }
  route(request, RouteOptions{true, true});
  if (!request.path.empty() && request.path.front() == '/') {
    DecodedPath decoded = decode_request_path(request.path);
    if (decoded.error == PathError::none) {
      require(decoded.path.find('\0') == std::string::npos);
      require(decoded.path.find("/../") == std::string::npos);
      require(!decoded.path.ends_with("/.."));
    }
  }
}

// A fingerprint of everything parsed from the stream, for comparing chunkings.
std::string run(std::string_view stream, std::size_t chunk) {
  ParserLimits limits{.max_header_bytes = 512, .max_headers = 8};
  RequestParser parser(limits);
  std::string buffer, trace;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    buffer.append(stream.substr(at, chunk));
    for (;;) {
      ParseResult result = parser.parse(buffer);
      require(result.consumed <= buffer.size());
      if (result.status == ParseStatus::request) {
        check_request(result.request, buffer);
        trace += std::string(result.request.method_name) + ' ' +
                 std::string(result.request.target) + ' ' +
                 std::to_string(result.request.content_length) +
                 (result.request.keep_alive ? "k" : "c") + '\n';
      }
      buffer.erase(0, result.consumed);
      if (result.status == ParseStatus::error) {
        require(parser.failed());
        require(parser.parse(buffer).status == ParseStatus::error);
        return trace + "error " + std::to_string(status_code(result.error));
      }
      if (result.status == ParseStatus::need_more) break;
    }
  }
  return trace;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::size_t chunk = data[0] % 16 + 1;
  std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string whole = run(stream, stream.size() + 1);
  std::string pieces = run(stream, chunk);
  // Chunking may only cut short a stream that ends mid-request, never change what was parsed.
  require(whole == pieces);
  return 0;
}
