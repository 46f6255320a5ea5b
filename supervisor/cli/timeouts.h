// How long the CLI waits for the supervisor's answer to each management request (--timeout).
// Pure: the spec, when the CLI could read one, is passed in.
#pragma once

#include <chrono>
#include <string_view>

#include "spec.h"

namespace deployctl {

// Used when no spec is at hand (--name NAME, or an unreadable file) for the commands that
// wait for replicas (scale, restart, reload, down).
inline constexpr std::chrono::milliseconds kLongRequestTimeout = std::chrono::minutes(10);
inline constexpr std::chrono::milliseconds kStatusTimeout = std::chrono::seconds(10);
// Added to what the spec's own timeouts allow: the supervisor's bookkeeping and a busy host.
inline constexpr std::chrono::milliseconds kTimeoutMargin = std::chrono::seconds(30);
// upgrade: two bounded checks of the new binary (5 s each), the exec and the new binary's
// first answer.
inline constexpr std::chrono::milliseconds kUpgradeTimeout = std::chrono::seconds(30);

// The default wait for `command`'s answer (docs/cli.md):
//   status, metrics, events   10 s (events -f: for the first answer);
//   down     the longest stop.timeout + margin;
//   scale    the longest start_period + stop.timeout + margin (the supervisor gives up itself
//            after start_period + stop.timeout + 5 s);
//   restart  every replica of every service replaced one after another: the sum of
//            replicas x (start_period + stop.timeout) + margin;
//   reload   restart's bound + every pre-start step's timeout + lego's timeout when a service
//            has tls.acme.
// `spec` may be null: then kLongRequestTimeout for all but status, metrics and events.
std::chrono::milliseconds default_request_timeout(std::string_view command, const Spec* spec);

}  // namespace deployctl
