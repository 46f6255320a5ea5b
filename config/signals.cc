// Signal names <-> numbers for stop.signal.
#include <array>
#include <cctype>
#include <csignal>
#include <string>
#include <string_view>

#include "load.h"

namespace deployctl {
namespace {

struct NamedSignal {
  int number;
  std::string_view name;  // without the "SIG" prefix
};

constexpr std::array<NamedSignal, 30> kSignals{{
    {SIGHUP, "HUP"},       {SIGINT, "INT"},       {SIGQUIT, "QUIT"},   {SIGILL, "ILL"},
    {SIGTRAP, "TRAP"},     {SIGABRT, "ABRT"},     {SIGBUS, "BUS"},     {SIGFPE, "FPE"},
    {SIGKILL, "KILL"},     {SIGUSR1, "USR1"},     {SIGSEGV, "SEGV"},   {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"},     {SIGALRM, "ALRM"},     {SIGTERM, "TERM"},   {SIGCHLD, "CHLD"},
    {SIGCONT, "CONT"},     {SIGSTOP, "STOP"},     {SIGTSTP, "TSTP"},   {SIGTTIN, "TTIN"},
    {SIGTTOU, "TTOU"},     {SIGURG, "URG"},       {SIGXCPU, "XCPU"},   {SIGXFSZ, "XFSZ"},
    {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"},     {SIGWINCH, "WINCH"}, {SIGIO, "IO"},
    {SIGPWR, "PWR"},       {SIGSYS, "SYS"},
}};

std::optional<int> parse_signal_number(std::string_view digits) {
  if (digits.empty() || digits.size() > 3) return std::nullopt;
  int number = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    number = number * 10 + (c - '0');
  }
  if (number < 1 || number >= NSIG) return std::nullopt;
  return number;
}

std::string upper_case(std::string_view text) {
  std::string upper;
  for (char c : text) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return upper;
}

}  // namespace

std::optional<int> parse_signal(std::string_view text) {
  if (!text.empty() && text[0] >= '0' && text[0] <= '9') return parse_signal_number(text);
  std::string name = upper_case(text);
  if (name.rfind("SIG", 0) == 0) name.erase(0, 3);
  for (const NamedSignal& known : kSignals) {
    if (known.name == name) return known.number;
  }
  return std::nullopt;
}

std::string signal_name(int signal) {
  for (const NamedSignal& known : kSignals) {
    if (known.number == signal) return "SIG" + std::string(known.name);
  }
  return std::to_string(signal);
}

}  // namespace deployctl
