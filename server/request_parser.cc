#include "request_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>

#include "ascii.h"

namespace deployctl::http {
namespace {

// Splits the next line off `block` (which must contain a '\n'); strips one trailing '\r'.
std::string_view take_line(std::string_view& block) {
  std::size_t newline = block.find('\n');
  std::string_view line = block.substr(0, newline);
  block.remove_prefix(newline + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Which characters each syntax element allows, one bit per element, for one lookup per byte.
enum CharClass : std::uint8_t { kToken = 1, kTarget = 2, kFieldValue = 4 };

constexpr std::array<std::uint8_t, 256> kCharClasses = [] {
  std::array<std::uint8_t, 256> classes{};
  for (unsigned c = 0; c < 256; ++c) {
    std::uint8_t bits = 0;
    if (is_token_char(static_cast<unsigned char>(c))) bits |= kToken;
    if (c > 0x20 && c != 0x7f) bits |= kTarget;  // visible ASCII and obs-text
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) bits |= kFieldValue;
    classes[c] = bits;
  }
  return classes;
}();

bool all_of(std::string_view text, CharClass allowed) {
  for (char c : text) {
    if ((kCharClasses[static_cast<unsigned char>(c)] & allowed) == 0) return false;
  }
  return true;
}

std::string_view trim_whitespace(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::optional<std::uint64_t> parse_content_length(std::string_view text) {
  if (text.empty() || text.size() > 18) return std::nullopt;  // 18 digits cannot overflow
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

Method method_from_name(std::string_view name) {
  if (name == "GET") return Method::get;
  if (name == "HEAD") return Method::head;
  return Method::other;
}

// Sets path and query from request.target (origin-form, absolute-form or anything else).
void split_target(Request& request) {
  std::string_view target = request.target;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (starts_with_ignoring_case(target, scheme)) {
      std::string_view rest = target.substr(scheme.size());
      std::size_t path_start = rest.find_first_of("/?");
      target = path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
      if (target.empty() || target.front() == '?') {
        request.path = "/";
        request.query = target.empty() ? target : target.substr(1);
        return;
      }
      break;
    }
  }
  std::size_t question = target.find('?');
  request.path = target.substr(0, question);
  request.query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
}

struct Failure {
  ParseError error;
  std::string_view detail;
};

ParseResult need_more(std::size_t consumed) {
  ParseResult result;
  result.consumed = consumed;
  return result;
}

Failure malformed(std::string_view detail) { return Failure{ParseError::bad_request, detail}; }

// What the header fields say about framing and persistence, gathered while reading them.
struct FieldFacts {
  std::optional<std::uint64_t> content_length;
  bool transfer_encoding = false;
  bool connection_close = false;
  bool connection_keep_alive = false;
  int host_count = 0;
  bool expects_continue = false;
};

void read_connection_tokens(std::string_view value, FieldFacts& facts) {
  while (!value.empty()) {
    std::size_t comma = value.find(',');
    std::string_view token = trim_whitespace(value.substr(0, comma));
    if (equals_ignoring_case(token, "close")) facts.connection_close = true;
    if (equals_ignoring_case(token, "keep-alive")) facts.connection_keep_alive = true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

// Returns an error detail, or an empty view if the field is acceptable.
std::string_view note_field(const Header& field, FieldFacts& facts) {
  if (equals_ignoring_case(field.name, "content-length")) {
    auto length = parse_content_length(field.value);
    if (!length) return "invalid Content-Length";
    if (facts.content_length && *facts.content_length != *length) {
      return "conflicting Content-Length fields";
    }
    facts.content_length = length;
  } else if (equals_ignoring_case(field.name, "transfer-encoding")) {
    facts.transfer_encoding = true;
  } else if (equals_ignoring_case(field.name, "connection")) {
    read_connection_tokens(field.value, facts);
  } else if (equals_ignoring_case(field.name, "host")) {
    ++facts.host_count;
  } else if (equals_ignoring_case(field.name, "expect")) {
    facts.expects_continue = equals_ignoring_case(field.value, "100-continue");
  }
  return {};
}

std::optional<Failure> parse_request_line(std::string_view line, Request& request) {
  std::size_t first_space = line.find(' ');
  if (first_space == std::string_view::npos) return malformed("request line without spaces");
  request.method_name = line.substr(0, first_space);
  if (request.method_name.empty() || !all_of(request.method_name, kToken)) {
    return malformed("invalid method");
  }
  request.method = method_from_name(request.method_name);
  line.remove_prefix(first_space + 1);
  std::size_t second_space = line.find(' ');
  if (second_space == std::string_view::npos) {
    return malformed("request line without HTTP version");
  }
  request.target = line.substr(0, second_space);
  if (request.target.empty() || !all_of(request.target, kTarget)) {
    return malformed("invalid request target");
  }
  std::string_view version = line.substr(second_space + 1);
  bool well_formed = version.size() == 8 && version.substr(0, 5) == "HTTP/" &&
                     is_digit(version[5]) && version[6] == '.' && is_digit(version[7]);
  if (!well_formed) return malformed("invalid HTTP version");
  if (version[5] != '1') {
    return Failure{ParseError::version_not_supported, "HTTP major version is not 1"};
  }
  request.minor_version = version[7] - '0';
  split_target(request);
  return std::nullopt;
}

}  // namespace

int status_code(ParseError error) {
  switch (error) {
    case ParseError::none:
      return 200;
    case ParseError::bad_request:
      return 400;
    case ParseError::header_too_large:
      return 431;
    case ParseError::not_implemented:
      return 501;
    case ParseError::version_not_supported:
      return 505;
  }
  return 400;
}

bool body_framing_allows_reuse(const Request& request) {
  return !(request.expects_continue && request.content_length > 0);
}

RequestParser::RequestParser(ParserLimits limits) : limits_(limits) {
  limits_.max_headers = std::min(limits_.max_headers, kMaxHeadersCapacity);
}

ParseResult RequestParser::fail(ParseError error, std::string_view detail) {
  failed_ = ParseResult{};
  failed_.status = ParseStatus::error;
  failed_.error = error;
  failed_.detail = detail;
  return failed_;
}

ParseResult RequestParser::parse(std::string_view input) {
  if (failed()) return failed_;
  std::size_t consumed = 0;
  if (body_remaining_ > 0) {
    std::size_t skip =
        static_cast<std::size_t>(std::min<std::uint64_t>(body_remaining_, input.size()));
    body_remaining_ -= skip;
    consumed += skip;
    input.remove_prefix(skip);
    if (body_remaining_ > 0) return need_more(consumed);
  }
  if (scanned_ == 0) {  // before a request line: skip empty lines
    while (!input.empty() && (input[0] == '\n' || input[0] == '\r')) {
      std::size_t length = input[0] == '\n' ? 1 : 2;
      if (length == 2 && input.size() < 2) return need_more(consumed);
      if (length == 2 && input[1] != '\n') return fail(ParseError::bad_request, "stray CR");
      consumed += length;
      input.remove_prefix(length);
    }
  }
  return parse_header_block(input, consumed);
}

ParseResult RequestParser::parse_header_block(std::string_view input,
                                              std::size_t already_consumed) {
  std::size_t limit = std::min(input.size(), limits_.max_header_bytes);
  std::size_t position = scanned_;
  while (position < limit) {
    const void* found = std::memchr(input.data() + position, '\n', limit - position);
    if (found == nullptr) {
      position = limit;
      break;
    }
    std::size_t newline = static_cast<std::size_t>(static_cast<const char*>(found) - input.data());
    std::size_t line_length = newline - line_start_;
    bool empty_line = line_length == 0 || (line_length == 1 && input[line_start_] == '\r');
    if (line_start_ > 0 && empty_line) {
      scanned_ = 0;
      line_start_ = 0;
      ParseResult result = parse_complete_block(input.substr(0, newline + 1));
      if (result.status == ParseStatus::request) result.consumed = already_consumed + newline + 1;
      return result;
    }
    line_start_ = newline + 1;
    position = newline + 1;
  }
  scanned_ = position;
  if (input.size() >= limits_.max_header_bytes) {
    return fail(ParseError::header_too_large, "header block exceeds the size limit");
  }
  return need_more(already_consumed);
}

ParseResult RequestParser::parse_complete_block(std::string_view block) {
  ParseResult result;
  Request& request = result.request;
  if (auto failure = parse_request_line(take_line(block), request)) {
    return fail(failure->error, failure->detail);
  }
  FieldFacts facts;
  std::size_t count = 0;
  for (std::string_view line = take_line(block); !line.empty(); line = take_line(block)) {
    if (line.front() == ' ' || line.front() == '\t') {
      return fail(ParseError::bad_request, "obsolete line folding");
    }
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) return fail(ParseError::bad_request, "field without ':'");
    Header field{line.substr(0, colon), trim_whitespace(line.substr(colon + 1))};
    if (field.name.empty() || !all_of(field.name, kToken)) {
      return fail(ParseError::bad_request, "invalid field name");
    }
    if (!all_of(field.value, kFieldValue)) {
      return fail(ParseError::bad_request, "control character in field value");
    }
    if (count == limits_.max_headers) {
      return fail(ParseError::header_too_large, "too many header fields");
    }
    headers_[count++] = field;
    if (auto error = note_field(field, facts); !error.empty()) {
      return fail(ParseError::bad_request, error);
    }
  }
  if (facts.transfer_encoding) {
    return fail(ParseError::not_implemented, "Transfer-Encoding is not supported");
  }
  if (request.minor_version >= 1 && facts.host_count == 0) {
    return fail(ParseError::bad_request, "HTTP/1.1 request without Host");
  }
  if (facts.host_count > 1) return fail(ParseError::bad_request, "more than one Host field");

  request.keep_alive = request.minor_version >= 1
                           ? !facts.connection_close
                           : facts.connection_keep_alive && !facts.connection_close;
  request.expects_continue = facts.expects_continue;
  request.content_length = facts.content_length.value_or(0);
  request.headers = std::span<const Header>(headers_.data(), count);
  body_remaining_ = request.content_length;
  result.status = ParseStatus::request;
  return result;
}

}  // namespace deployctl::http
