#include "http_date.h"

#include <ctime>

namespace deployctl::http {
namespace {

char* put_two_digits(char* out, int value) {
  out[0] = static_cast<char>('0' + value / 10 % 10);
  out[1] = static_cast<char>('0' + value % 10);
  return out + 2;
}

char* put_text(char* out, std::string_view text) {
  for (char c : text) *out++ = c;
  return out;
}

}  // namespace

HttpDate format_http_date(std::int64_t unix_seconds) {
  static constexpr std::string_view kWeekdays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm utc{};
  auto seconds = static_cast<std::time_t>(unix_seconds);
  gmtime_r(&seconds, &utc);  // reads no time zone: pure
  int year = utc.tm_year + 1900;

  HttpDate out{};
  char* p = put_text(out.data(), kWeekdays[utc.tm_wday]);
  p = put_text(p, ", ");
  p = put_two_digits(p, utc.tm_mday);
  p = put_text(p, " ");
  p = put_text(p, kMonths[utc.tm_mon]);
  p = put_text(p, " ");
  p = put_two_digits(p, year / 100);
  p = put_two_digits(p, year % 100);
  p = put_text(p, " ");
  p = put_two_digits(p, utc.tm_hour);
  p = put_text(p, ":");
  p = put_two_digits(p, utc.tm_min);
  p = put_text(p, ":");
  p = put_two_digits(p, utc.tm_sec);
  put_text(p, " GMT");
  return out;
}

}  // namespace deployctl::http
