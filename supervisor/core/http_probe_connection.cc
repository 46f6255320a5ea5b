#include "http_probe_connection.h"

#include <algorithm>

namespace deployctl {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [](char x, char y) { return lower(x) == lower(y); });
}

// RFC 9110 tchar.
bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c)) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Calls f on each trimmed, non-empty element of a comma-separated list.
template <typename F>
void for_each_element(std::string_view list, F f) {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trim(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

std::optional<std::uint64_t> parse_length(std::string_view value) {
  if (value.empty() || value.size() > 18) return std::nullopt;
  std::uint64_t length = 0;
  for (char c : value) {
    if (!is_digit(c)) return std::nullopt;
    length = length * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return length;
}

// What the header lines say about framing and persistence, gathered before they are judged.
struct Framing {
  std::optional<std::uint64_t> content_length;
  std::optional<std::string_view> last_coding;  // of Transfer-Encoding, if present
  bool close = false;
  bool keep_alive = false;
};

HeadParse failure(std::string error) {
  return {.status = HeadStatus::error, .head = {}, .error = std::move(error)};
}

// Reads one header line into `framing`; returns an error text, empty if the line is fine.
std::string read_header(std::string_view line, Framing& framing) {
  if (line.front() == ' ' || line.front() == '\t') return "folded header line";
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return "header line without a name";
  const std::string_view name = line.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(), is_token_char)) return "invalid header name";
  const std::string_view value = trim(line.substr(colon + 1));
  if (equals_ignoring_case(name, "content-length")) {
    const auto length = parse_length(value);
    if (!length || (framing.content_length && *framing.content_length != *length)) {
      return "invalid Content-Length";
    }
    framing.content_length = length;
  } else if (equals_ignoring_case(name, "transfer-encoding")) {
    for_each_element(value, [&](std::string_view coding) { framing.last_coding = coding; });
    if (!framing.last_coding) framing.last_coding = value;
  } else if (equals_ignoring_case(name, "connection")) {
    for_each_element(value, [&](std::string_view option) {
      framing.close = framing.close || equals_ignoring_case(option, "close");
      framing.keep_alive = framing.keep_alive || equals_ignoring_case(option, "keep-alive");
    });
  }
  return {};
}

ResponseHead judge_framing(int status, int minor, const Framing& framing, std::size_t size) {
  ResponseHead head{.status = status, .minor_version = minor, .head_bytes = size};
  head.keep_alive = !framing.close && (minor >= 1 || framing.keep_alive);
  if (status < 200 || status == 204 || status == 304) {
    head.body = BodyFraming::none;
  } else if (framing.last_coding) {
    head.body = equals_ignoring_case(*framing.last_coding, "chunked") ? BodyFraming::chunked
                                                                      : BodyFraming::until_close;
  } else if (framing.content_length) {
    head.body = BodyFraming::length;
    head.content_length = *framing.content_length;
  } else {
    head.body = BodyFraming::until_close;
  }
  return head;
}

// Whether `bytes` can still begin "HTTP/1.<digit> ": garbage fails without waiting for a line end.
bool could_start_status_line(std::string_view bytes) {
  constexpr std::string_view prefix = "HTTP/1.";
  const std::size_t n = std::min(bytes.size(), prefix.size());
  return bytes.substr(0, n) == prefix.substr(0, n);
}

}  // namespace

std::string printable_prefix(std::string_view raw, std::size_t limit) {
  std::string out(raw.substr(0, limit));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  if (raw.size() > limit) out += "...";
  return out;
}

std::optional<int> parse_status_line(std::string_view line) {
  if (line.ends_with('\n')) line.remove_suffix(1);
  if (line.ends_with('\r')) line.remove_suffix(1);
  constexpr std::string_view prefix = "HTTP/1.";
  if (!line.starts_with(prefix)) return std::nullopt;
  line.remove_prefix(prefix.size());
  // Now "<minor digit> SP <3 digits>" and then nothing or SP reason-phrase.
  if (line.size() < 5 || !is_digit(line[0]) || line[1] != ' ') return std::nullopt;
  if (!is_digit(line[2]) || !is_digit(line[3]) || !is_digit(line[4])) return std::nullopt;
  if (line.size() > 5 && line[5] != ' ') return std::nullopt;
  const int status = (line[2] - '0') * 100 + (line[3] - '0') * 10 + (line[4] - '0');
  if (status < 100 || status > 599) return std::nullopt;
  return status;
}

HeadParse parse_response_head(std::string_view bytes, std::size_t max_head) {
  std::optional<int> status;
  int minor = 1;
  Framing framing;
  std::size_t headers = 0;
  for (std::size_t start = 0;;) {
    const std::size_t newline = bytes.find('\n', start);
    if (!status && !could_start_status_line(bytes)) {
      std::string_view seen = bytes.substr(0, newline);
      if (seen.ends_with('\r')) seen.remove_suffix(1);
      return failure("not an HTTP/1.x status line: '" + printable_prefix(seen) + "'");
    }
    if (newline == std::string_view::npos && bytes.size() < max_head) return {};
    if (newline == std::string_view::npos || newline + 1 > max_head) {
      return failure("response head longer than " + std::to_string(max_head) + " bytes");
    }
    std::string_view line = bytes.substr(start, newline - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    start = newline + 1;
    if (!status) {
      status = parse_status_line(line);
      if (!status) return failure("not an HTTP/1.x status line: '" + printable_prefix(line) + "'");
      minor = line[7] - '0';
    } else if (line.empty()) {
      return {.status = HeadStatus::complete,
              .head = judge_framing(*status, minor, framing, start),
              .error = {}};
    } else if (++headers > kMaxResponseHeaders) {
      return failure("more than " + std::to_string(kMaxResponseHeaders) + " header lines");
    } else if (std::string error = read_header(line, framing); !error.empty()) {
      return failure(error + ": '" + printable_prefix(line) + "'");
    }
  }
}

bool reads_body(const ResponseHead& head) {
  return head.body == BodyFraming::none ||
         (head.body == BodyFraming::length && head.content_length <= kMaxProbeBody);
}

ProbeConnectionPolicy::Start ProbeConnectionPolicy::begin_check(bool kept_alive) {
  if (state_ == State::idle && kept_alive) {
    state_ = State::reused;
    return Start::send_on_kept;
  }
  state_ = State::fresh;
  return Start::connect;
}

ProbeConnectionPolicy::AfterFailure ProbeConnectionPolicy::transport_failed(
    std::size_t response_bytes) {
  if (state_ == State::reused && response_bytes == 0) {
    state_ = State::fresh;
    return AfterFailure::reconnect;
  }
  state_ = State::none;
  return AfterFailure::fail;
}

bool ProbeConnectionPolicy::answered(const ResponseHead& head, bool leftover) {
  const bool keep = (state_ == State::fresh || state_ == State::reused) && head.keep_alive &&
                    head.status >= 200 && reads_body(head) && !leftover;
  state_ = keep ? State::idle : State::none;
  return keep;
}

}  // namespace deployctl
