// export_systemd: template units that run the same replicas without deployctl (docs/export.md
// has the table of every spec key and what it becomes).
#include <algorithm>
#include <cmath>

#include "export.h"
#include "unit_file.h"
#include "warnings.h"

namespace deployctl::exporter {
namespace {

struct Names {
  std::string prefix;  // "SPEC"
  std::string target() const { return prefix + ".target"; }
  std::string step(const PreStartStep& step) const {
    return prefix + "-pre-start-" + unit::escape_name(step.name) + ".service";
  }
  std::string socket(const ServiceSpec& s) const { return prefix + "-" + s.name + ".socket"; }
  std::string templ(const ServiceSpec& s) const { return prefix + "-" + s.name + "@.service"; }
  std::string instance(const ServiceSpec& s, int i) const {
    return prefix + "-" + s.name + "@" + std::to_string(i) + ".service";
  }
};

std::string lines(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += item + "\n";
  return out;
}

bool uses_port(const std::string& text) {
  return expand_placeholders(text, 0, 1) != expand_placeholders(text, 0, 2);
}

// A relative program ("./worker") is resolved against the working directory, as deployctl
// does; systemd needs an absolute path (or a bare name it finds in its own PATH).
std::vector<std::string> exec_words(std::vector<std::string> argv, const std::string& dir) {
  if (!argv.empty() && argv[0].find('/') != std::string::npos && argv[0][0] != '/') {
    argv[0] = dir + "/" + (argv[0].rfind("./", 0) == 0 ? argv[0].substr(2) : argv[0]);
  }
  std::vector<std::string> words;
  for (const auto& arg : argv) words.push_back(unit::template_word(arg));
  return words;
}

RenderedFile step_unit(const Spec& spec, std::size_t index, const Names& names) {
  const PreStartStep& step = spec.pre_start[index];
  std::vector<std::string> unit_section = {
      "[Unit]", "Description=" + spec.name + " pre-start step " + unit::no_specifiers(step.name),
      "PartOf=" + names.target()};
  if (index > 0) {
    const std::string previous = names.step(spec.pre_start[index - 1]);
    unit_section.push_back("Requires=" + previous);
    unit_section.push_back("After=" + previous);
  }
  std::vector<std::string> service = {
      "",
      "[Service]",
      "Type=oneshot",
      "RemainAfterExit=yes",
      "ExecStart=" + unit::exec_line(exec_words(step.command, step.working_dir)),
      "WorkingDirectory=" + step.working_dir,
      "TimeoutStartSec=" + unit::timespan(step.timeout)};
  for (const auto& [key, value] : step.env) service.push_back(unit::environment(key, value));
  return {names.step(step), lines(unit_section) + lines(service)};
}

RenderedFile socket_unit(const Spec& spec, const ServiceSpec& service, const Names& names) {
  std::vector<std::string> text = {
      "[Unit]", "Description=" + spec.name + " " + service.name + " listening sockets",
      "PartOf=" + names.target(), "", "[Socket]"};
  for (const auto& address : service.listen) text.push_back("ListenStream=" + address.text);
  text.push_back("FileDescriptorName=" + service.name);
  // A socket must name a service to activate on traffic; the replicas start with the target.
  text.push_back("Service=" + names.instance(service, 0));
  return {names.socket(service), lines(text)};
}

void restart_lines(const ServiceSpec& service, const SystemdOptions& options,
                   std::vector<std::string>* unit_section, std::vector<std::string>* section,
                   Warnings& warnings) {
  const RestartSpec& restart = service.restart;
  const char* policy = restart.policy == RestartPolicy::always       ? "always"
                       : restart.policy == RestartPolicy::on_failure ? "on-failure"
                                                                     : "no";
  section->push_back(std::string("Restart=") + policy);
  section->push_back("RestartSec=" + unit::timespan(restart.backoff.initial));
  const std::string backoff = service_key(service.name, "restart.backoff");
  if (options.systemd_version >= 254) {
    const double ratio = static_cast<double>(restart.backoff.max.count()) /
                         static_cast<double>(restart.backoff.initial.count());
    const int steps = std::max(1, static_cast<int>(std::ceil(std::log2(std::max(ratio, 1.0)))));
    section->push_back("RestartSteps=" + std::to_string(steps));
    section->push_back("RestartMaxDelaySec=" + unit::timespan(restart.backoff.max));
  } else if (warnings.written(backoff + ".max")) {
    warnings.add(backoff + ".max", "systemd " + std::to_string(options.systemd_version) +
                                       " has no RestartSteps=/RestartMaxDelaySec= (254 and "
                                       "later): every restart waits RestartSec=");
  }
  for (const char* key : {"jitter", "reset_after"}) {
    if (warnings.written(backoff + "." + key)) {
      warnings.add(backoff + "." + key, "systemd has no equivalent: not exported");
    }
  }
  unit_section->push_back("StartLimitIntervalSec=" + unit::timespan(restart.crash_loop.within));
  unit_section->push_back("StartLimitBurst=" + std::to_string(restart.crash_loop.restarts));
  const std::string crash_loop = service_key(service.name, "restart.crash_loop");
  if (warnings.written(crash_loop)) {
    warnings.add(crash_loop,
                 "written as StartLimitBurst=/StartLimitIntervalSec=: systemd then stops "
                 "restarting the instance and marks it failed, where deployctl keeps backing off");
  }
}

void warn_unexpressed(const ServiceSpec& service, Warnings& warnings) {
  if (warnings.written(service_key(service.name, "health"))) {
    warnings.add(service_key(service.name, "health"),
                 "systemd has no health probes: a replica counts as up once started "
                 "(Type=simple); not exported");
  }
  if (warnings.written(service_key(service.name, "rollout"))) {
    warnings.add(service_key(service.name, "rollout"),
                 "systemd has no rolling restart: `systemctl restart` acts on the instances "
                 "you name; not exported");
  }
  if (service.memory.restart_above) {
    warnings.add(service_key(service.name, "memory.restart_above"),
                 "written as MemoryHigh=, which throttles and reclaims above the threshold "
                 "instead of restarting the replica");
  }
  if (service.sockets == SocketMode::per_replica) {
    warnings.add(service_key(service.name, "sockets"),
                 "systemd has no steering among per-replica sockets: every instance gets the "
                 "one socket unit's socket (as with \"shared\")");
  }
}

std::vector<RenderedFile> service_units(const Spec& spec, const ServiceSpec& service,
                                        const Names& names, const SystemdOptions& options,
                                        Warnings& warnings) {
  std::vector<std::string> unit_section = {
      "[Unit]", "Description=" + spec.name + " " + service.name + " replica %i",
      "PartOf=" + names.target()};
  std::vector<std::string> section = {"", "[Service]", "Type=simple"};
  if (!service.listen.empty()) {
    unit_section.push_back("Requires=" + names.socket(service));
    unit_section.push_back("After=" + names.socket(service));
    section.push_back("Sockets=" + names.socket(service));
  }
  if (!spec.pre_start.empty()) {
    unit_section.push_back("Requires=" + names.step(spec.pre_start.back()));
    unit_section.push_back("After=" + names.step(spec.pre_start.back()));
  }
  section.push_back("ExecStart=" +
                    unit::exec_line(exec_words(service.command, service.working_dir)));
  section.push_back("WorkingDirectory=" + service.working_dir);
  if (!service.user.empty()) section.push_back("User=" + service.user);
  if (!service.group.empty()) section.push_back("Group=" + service.group);
  section.push_back(unit::environment("DEPLOYCTL_SERVICE", service.name));
  section.push_back(unit::environment_template("DEPLOYCTL_REPLICA", "{replica}"));
  if (!service.env_file.empty()) section.push_back("EnvironmentFile=" + service.env_file);
  std::vector<std::pair<std::string, std::string>> per_instance;
  for (const auto& [key, value] : service.env) {
    if (uses_port(value)) {
      per_instance.emplace_back(key, value);
    } else {
      section.push_back(unit::environment_template(key, value));
    }
  }
  restart_lines(service, options, &unit_section, &section, warnings);
  if (service.memory.max) section.push_back("MemoryMax=" + std::to_string(*service.memory.max));
  if (service.memory.restart_above) {
    section.push_back("MemoryHigh=" + std::to_string(*service.memory.restart_above));
  }
  section.push_back("KillSignal=" + signal_name(service.stop.signal));
  section.push_back("TimeoutStopSec=" + unit::timespan(service.stop.timeout));
  warn_unexpressed(service, warnings);
  std::vector<RenderedFile> files = {{names.templ(service), lines(unit_section) + lines(section)}};
  if (service.listen.size() > 0) files.push_back(socket_unit(spec, service, names));
  // {port}: replica i's own port, set per instance by a drop-in.
  const bool port_used =
      service.port && (std::any_of(service.command.begin(), service.command.end(), uses_port) ||
                       !per_instance.empty());
  for (int i = 0; port_used && i < service.replicas; ++i) {
    std::vector<std::string> drop_in = {
        "[Service]", unit::environment(unit::kPortVariable, std::to_string(*service.port + i))};
    for (const auto& [key, value] : per_instance) {
      drop_in.push_back(unit::environment(key, expand_placeholders(value, i, *service.port + i)));
    }
    files.push_back({names.instance(service, i) + ".d/port.conf", lines(drop_in)});
  }
  return files;
}

RenderedFile target_unit(const Spec& spec, const Names& names) {
  std::vector<std::string> wants;
  for (const auto& service : spec.services) {
    if (!service.listen.empty()) wants.push_back(names.socket(service));
    for (int i = 0; i < service.replicas; ++i) wants.push_back(names.instance(service, i));
  }
  std::vector<std::string> text = {"[Unit]", "Description=deployctl deployment " + spec.name};
  for (const auto& unit_name : wants) text.push_back("Wants=" + unit_name);
  text.insert(text.end(), {"", "[Install]", "WantedBy=multi-user.target"});
  return {names.target(), lines(text)};
}

}  // namespace

ExportResult export_systemd(const ExportInput& input, const SystemdOptions& options) {
  const Spec& spec = input.spec;
  Warnings warnings(spec.path, input.positions);
  Names names{unit::escape_name(spec.name)};
  ExportResult result;
  result.files.push_back(target_unit(spec, names));
  for (std::size_t i = 0; i < spec.pre_start.size(); ++i) {
    result.files.push_back(step_unit(spec, i, names));
  }
  for (const auto& service : spec.services) {
    if (service.replicas_auto) {
      warnings.add(service_key(service.name, "replicas"),
                   "\"auto\" is this machine's CPU count: " + std::to_string(service.replicas) +
                       " instances are written into " + names.target());
    }
    if (!service.env_file.empty() && !input.env_files.count(service.env_file)) {
      warnings.add(service_key(service.name, "env_file"),
                   "cannot read " + service.env_file + " now; EnvironmentFile= reads it at start");
    }
    auto files = service_units(spec, service, names, options, warnings);
    result.files.insert(result.files.end(), files.begin(), files.end());
  }
  if (warnings.written("logs")) {
    warnings.add("logs",
                 "under systemd the output goes to the journal (journalctl -u UNIT); "
                 "[logs] is not exported");
  }
  result.warnings = warnings.take();
  return result;
}

}  // namespace deployctl::exporter
