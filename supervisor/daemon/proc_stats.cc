#include "proc_stats.h"

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "read_file.h"

namespace deployctl {
namespace {

// The fields of /proc/PID/stat, fields[i] being field i+1 of proc(5): (1) pid (2) comm
// (3) state ... (14) utime (15) stime (16) cutime (17) cstime (22) starttime (23) vsize (24) rss.
std::vector<std::string> stat_fields(const std::string& pid) {
  const std::string text = read_file("/proc/" + pid + "/stat", kMaxKernelBytes).text;
  const auto close_paren = text.rfind(')');  // the command name may hold anything
  if (close_paren == std::string::npos) return {};
  std::vector<std::string> fields{pid, "comm"};
  std::istringstream rest(text.substr(close_paren + 1));
  for (std::string field; rest >> field;) fields.push_back(std::move(field));
  return fields;
}

double field_number(const std::vector<std::string>& fields, std::size_t proc5_number) {
  const std::size_t i = proc5_number - 1;
  return i < fields.size() ? std::strtod(fields[i].c_str(), nullptr) : 0.0;
}

double boot_time_seconds() {
  std::istringstream stat(read_file("/proc/stat", kMaxKernelBytes).text);
  std::string key;
  while (stat >> key) {
    if (key == "btime") {
      double btime = 0;
      stat >> btime;
      return btime;
    }
  }
  return 0;
}

}  // namespace

std::optional<double> process_cpu_seconds(pid_t pid) {
  const auto fields = stat_fields(std::to_string(pid));
  if (fields.size() < 17) return std::nullopt;
  const double ticks = field_number(fields, 14) + field_number(fields, 15) +
                       field_number(fields, 16) + field_number(fields, 17);
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

ProcessMetrics own_process_metrics() {
  ProcessMetrics metrics;
  const auto fields = stat_fields("self");
  if (fields.size() >= 24) {
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    metrics.cpu_seconds = (field_number(fields, 14) + field_number(fields, 15)) / tick;
    metrics.start_time_seconds = boot_time_seconds() + field_number(fields, 22) / tick;
    metrics.virtual_bytes = static_cast<std::uint64_t>(field_number(fields, 23));
    metrics.resident_bytes =
        static_cast<std::uint64_t>(field_number(fields, 24)) * sysconf(_SC_PAGESIZE);
  }
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) metrics.open_fds += entry->d_name[0] != '.';
    closedir(dir);
    if (metrics.open_fds) --metrics.open_fds;  // the directory's own fd
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) metrics.max_fds = limit.rlim_cur;
  return metrics;
}

std::optional<AcceptQueue> accept_queue(int fd) {
  tcp_info info{};
  socklen_t size = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return std::nullopt;
  if (info.tcpi_state != 10 /* TCP_LISTEN */) return std::nullopt;
  return AcceptQueue{info.tcpi_unacked, info.tcpi_sacked};
}

}  // namespace deployctl
