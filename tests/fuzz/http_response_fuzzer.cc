// libFuzzer target for the http probe's response head parser (core/http_probe_connection.h),
// checking its contract on every prefix of the input, as a connection receives it: a head is
// never longer than the input or the limit; once a prefix is complete or failed, every longer
// prefix gives the same verdict (the same head; an error again); need_more only below the
// limit. Then the connection policy is driven with the head's answer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "http_probe_connection.h"

namespace {

using namespace deployctl;

void require(bool condition) {
  if (!condition) std::abort();
}

bool same_head(const ResponseHead& a, const ResponseHead& b) {
  return a.status == b.status && a.minor_version == b.minor_version &&
         a.keep_alive == b.keep_alive && a.body == b.body &&
         a.content_length == b.content_length && a.head_bytes == b.head_bytes;
}

void check_policy(const ResponseHead& head, std::uint8_t choices) {
  ProbeConnectionPolicy policy;
  require(policy.begin_check(choices & 1) == ProbeConnectionPolicy::Start::connect);
  const bool kept = policy.answered(head, choices & 2);
  require(kept == (policy.state() == ProbeConnectionPolicy::State::idle));
  require(!kept || (head.keep_alive && reads_body(head) && head.status >= 200));
  const auto start = policy.begin_check(choices & 4);
  require((start == ProbeConnectionPolicy::Start::send_on_kept) == (kept && (choices & 4)));
  if (policy.transport_failed(choices >> 4) == ProbeConnectionPolicy::AfterFailure::reconnect) {
    require(start == ProbeConnectionPolicy::Start::send_on_kept && (choices >> 4) == 0);
    require(policy.transport_failed(0) == ProbeConnectionPolicy::AfterFailure::fail);
  }
  require(policy.state() != ProbeConnectionPolicy::State::idle);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t choices = data[0];
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::size_t limit = 64 + (choices % 4) * 1024;  // small limits reach the limit paths
  std::optional<HeadParse> settled;
  for (std::size_t n = 0; n <= input.size(); ++n) {
    const HeadParse parsed = parse_response_head(input.substr(0, n), limit);
    if (settled) {
      require(parsed.status == settled->status);  // an error's detail may show more bytes
      if (parsed.status == HeadStatus::complete) require(same_head(parsed.head, settled->head));
      continue;
    }
    if (parsed.status == HeadStatus::need_more) {
      require(n < limit);
      continue;
    }
    if (parsed.status == HeadStatus::complete) {
      require(parsed.head.head_bytes <= n && parsed.head.head_bytes <= limit);
      require(parsed.head.status >= 100 && parsed.head.status <= 599);
      check_policy(parsed.head, choices);
    } else {
      require(!parsed.error.empty());
    }
    settled = parsed;
  }
  return 0;
}
