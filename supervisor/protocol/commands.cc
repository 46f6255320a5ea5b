#include "commands.h"

namespace deployctl {
namespace {

constexpr CommandInfo kCommands[] = {
    {"up", "up [-d] [--no-dbus] [FILE]", "start the deployment in FILE (default ./deploy.toml) and supervise it", false},
    {"validate", "validate [FILE]", "check a spec file; exit 0 if valid, 2 with every error if not", false},
    {"status", "status [--json] [FILE | --name NAME]", "show every replica: pid, state, health, uptime, restarts, last exit, memory", true},
    {"events", "events [--json] [-f] [FILE | --name NAME]", "show recent events: state changes, exits, probe failures, scale, rollouts (-f: follow)", true},
    {"top", "top [FILE | --name NAME]", "live view: replicas, memory and CPU, services, recent events (q quits, s sorts, arrows select, l log)", false},
    {"metrics", "metrics [FILE | --name NAME]", "print the Prometheus metrics (text exposition format, docs/metrics.md)", true},
    {"scale", "scale SERVICE=N [SERVICE=N ...] [-f FILE | --name NAME]", "change replica counts live; waits until reached", true},
    {"restart", "restart [SERVICE ...] [-f FILE | --name NAME]", "rolling restart within [rollout] bounds; waits until done", true},
    {"renew", "renew [SERVICE ...] [-f FILE | --name NAME]", "obtain a new ACME certificate now (tls.acme services; none named: all); a new one rolls the replicas", true},
    {"reload", "reload [FILE]", "re-read the spec and apply the difference (also SIGHUP); waits until done", true},
    {"upgrade", "upgrade [FILE | --name NAME] [--binary PATH]", "re-execute the supervisor with a new binary in place; replicas keep running (also SIGUSR2)", true},
    {"down", "down [FILE | --name NAME]", "stop every replica and the supervisor; nothing is left running", true},
    {"logs", "logs [SERVICE[.N]] [-f] [-n N] [FILE | --name NAME]", "show replica output from the log files (-f: follow); no supervisor needed", false},
    {"export", "export kubernetes|systemd [FILE] [-o DIR] [--image IMAGE]", "render the spec as Kubernetes objects or systemd units (docs/export.md)", false},
    {"help", "help", "show this help", false},
};

}  // namespace

std::span<const CommandInfo> commands() { return kCommands; }

json::Value management_error(const std::string& message, int exit_code) {
  json::Value response;
  response["ok"] = false;
  response["error"] = message;
  response["exit"] = exit_code;
  return response;
}

const CommandInfo* find_command(std::string_view name) {
  for (const auto& command : kCommands) {
    if (command.name == name) return &command;
  }
  return nullptr;
}

int exit_code_of(ReplyCode code) {
  switch (code) {
    case ReplyCode::ok: return kExitOk;
    case ReplyCode::usage: return kExitUsage;
    case ReplyCode::busy: return kExitBusy;
    case ReplyCode::failed: break;
  }
  return kExitFailed;
}

}  // namespace deployctl
