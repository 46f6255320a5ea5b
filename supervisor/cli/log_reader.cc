#include "log_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>

namespace deployctl {
namespace {

constexpr std::size_t kChunk = 64 * 1024;

// The rotation numbers N of every BASE.log.N in dir, highest (oldest) first.
std::vector<int> rotated_numbers(const std::string& dir, const std::string& base) {
  std::vector<int> numbers;
  const std::string prefix = logs::file_name(base) + ".";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    int n = 0;
    const char* first = name.data() + prefix.size();
    const char* last = name.data() + name.size();
    auto [end, error] = std::from_chars(first, last, n);
    if (error == std::errc() && end == last && n > 0) numbers.push_back(n);
  }
  std::sort(numbers.rbegin(), numbers.rend());
  return numbers;
}

ssize_t read_at(int fd, char* buffer, std::size_t size, off_t at) {
  for (;;) {
    ssize_t n = pread(fd, buffer, size, at);
    if (n >= 0 || errno != EINTR) return n;
  }
}

// Splits complete lines off *pending (each kept with its '\n'), keeping those selected.
void take_lines(std::string* pending, const logs::Selector& selector,
                std::vector<std::string>* out) {
  std::size_t start = 0, newline;
  while ((newline = pending->find('\n', start)) != std::string::npos) {
    std::string_view line(pending->data() + start, newline + 1 - start);
    if (logs::selects(selector, line)) out->emplace_back(line);
    start = newline + 1;
  }
  pending->erase(0, start);
}

// The last `want` selected complete lines of fd's bytes [0, end), in order (end is just after a
// '\n' or 0). Reads backwards, kChunk at a time.
std::vector<std::string> last_lines(int fd, off_t end, std::size_t want,
                                    const logs::Selector& selector) {
  std::vector<std::string> reversed;
  std::string carry;  // the beginning of a line whose start is further back
  off_t position = end;
  while (position > 0 && reversed.size() < want) {
    const off_t start = std::max<off_t>(0, position - static_cast<off_t>(kChunk));
    std::string chunk(static_cast<std::size_t>(position - start), '\0');
    if (read_at(fd, chunk.data(), chunk.size(), start) != static_cast<ssize_t>(chunk.size())) break;
    chunk += carry;
    position = start;
    std::size_t line_end = chunk.size();
    while (reversed.size() < want) {
      if (line_end == 0) break;
      std::size_t previous = line_end >= 2 ? chunk.rfind('\n', line_end - 2) : std::string::npos;
      if (previous == std::string::npos && position > 0) break;  // its start is further back
      std::size_t line_start = previous == std::string::npos ? 0 : previous + 1;
      std::string_view line(chunk.data() + line_start, line_end - line_start);
      if (logs::selects(selector, line)) reversed.emplace_back(line);
      line_end = line_start;
    }
    carry = chunk.substr(0, line_end);
  }
  return {reversed.rbegin(), reversed.rend()};
}

// Just after the last '\n' of fd's first `size` bytes (0 if none).
off_t complete_end(int fd, off_t size) {
  off_t position = size;
  char buffer[4096];
  while (position > 0) {
    const off_t start = std::max<off_t>(0, position - static_cast<off_t>(sizeof buffer));
    ssize_t n = read_at(fd, buffer, static_cast<std::size_t>(position - start), start);
    if (n <= 0) return 0;
    for (ssize_t i = n - 1; i >= 0; --i) {
      if (buffer[i] == '\n') return start + i + 1;
    }
    position = start;
  }
  return 0;
}

}  // namespace

LogReader::LogReader(std::string dir, std::string base)
    : dir_(std::move(dir)), base_(std::move(base)), live_path_(dir_ + "/" + logs::file_name(base_)) {}

LogReader::~LogReader() {
  if (current_.fd >= 0) close(current_.fd);
}

std::vector<std::string> LogReader::bases_in(const std::string& dir) {
  std::vector<std::string> bases;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0) {
      bases.push_back(name.substr(0, name.size() - 4));
    }
  }
  std::sort(bases.begin(), bases.end());
  return bases;
}

void LogReader::close_all(std::vector<File>& files) {
  for (auto& file : files) {
    if (file.fd >= 0) close(file.fd);
  }
  files.clear();
}

bool LogReader::snapshot(std::vector<File>* files, bool* has_live) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::vector<std::string> paths;
    for (int n : rotated_numbers(dir_, base_)) {
      paths.push_back(dir_ + "/" + logs::rotated_name(base_, n));
    }
    paths.push_back(live_path_);
    std::vector<File> opened;
    std::vector<std::size_t> opened_path;  // index in paths of each opened file
    bool consistent = true;
    for (std::size_t i = 0; i < paths.size() && consistent; ++i) {
      File file;
      file.fd = ::open(paths[i].c_str(), O_RDONLY | O_CLOEXEC);
      struct stat info {};
      if (file.fd < 0 || fstat(file.fd, &info) != 0) {
        if (file.fd >= 0) close(file.fd);
        consistent = i + 1 == paths.size();  // only the live file may be missing (mid-rotation)
        continue;
      }
      file.dev = info.st_dev;
      file.ino = info.st_ino;
      opened.push_back(file);
      opened_path.push_back(i);
    }
    // One generation: every name still holds the file opened under it (no rename meanwhile).
    for (std::size_t f = 0; f < opened.size() && consistent; ++f) {
      struct stat info {};
      consistent = stat(paths[opened_path[f]].c_str(), &info) == 0 &&
                   info.st_dev == opened[f].dev && info.st_ino == opened[f].ino;
    }
    if (consistent) {
      *has_live = !opened_path.empty() && opened_path.back() + 1 == paths.size();
      *files = std::move(opened);
      return true;
    }
    close_all(opened);
  }
  return false;
}

bool LogReader::open() {
  std::vector<File> files;
  bool has_live = false;
  if (!snapshot(&files, &has_live) || !has_live) {
    close_all(files);
    return false;
  }
  current_ = files.back();
  files.pop_back();
  close_all(files);
  offset_ = 0;
  return true;
}

std::vector<std::string> LogReader::tail(std::size_t count, const logs::Selector& selector) {
  // Reopen as a snapshot so the rotated files belong to the same generation as current_.
  std::vector<File> files;
  bool has_live = false;
  std::vector<std::string> lines;
  if (current_.fd >= 0) close(current_.fd);
  current_ = {};
  if (!snapshot(&files, &has_live) || !has_live) {
    close_all(files);
    return lines;
  }
  struct stat info {};
  fstat(files.back().fd, &info);
  offset_ = complete_end(files.back().fd, info.st_size);
  off_t end = offset_;
  for (std::size_t i = files.size(); i-- > 0 && lines.size() < count;) {
    if (i + 1 < files.size()) {
      struct stat rotated {};
      fstat(files[i].fd, &rotated);
      end = complete_end(files[i].fd, rotated.st_size);
    }
    auto older = last_lines(files[i].fd, end, count - lines.size(), selector);
    lines.insert(lines.begin(), older.begin(), older.end());
  }
  current_ = files.back();
  files.pop_back();
  close_all(files);
  return lines;
}

void LogReader::read_rest(std::vector<std::string>* out, const logs::Selector& selector,
                          bool at_end) {
  char buffer[kChunk];
  for (;;) {
    ssize_t n = read_at(current_.fd, buffer, sizeof buffer, offset_);
    if (n <= 0) break;
    offset_ += n;
    partial_.append(buffer, static_cast<std::size_t>(n));
    take_lines(&partial_, selector, out);
  }
  if (at_end && !partial_.empty()) {  // an old file never grows again: its last line is whole
    partial_ += '\n';
    take_lines(&partial_, selector, out);
  }
}

std::vector<std::string> LogReader::poll(const logs::Selector& selector, std::string* warning) {
  std::vector<std::string> out;
  if (current_.fd < 0) {
    if (!open()) return out;
  }
  read_rest(&out, selector, false);
  struct stat live {};
  if (stat(live_path_.c_str(), &live) != 0) return out;  // mid-rotation: look again later
  if (live.st_dev == current_.dev && live.st_ino == current_.ino) return out;
  std::vector<File> files;
  bool has_live = false;
  if (!snapshot(&files, &has_live) || !has_live) {
    close_all(files);
    return out;
  }
  read_rest(&out, selector, true);  // whatever was written to the old file before the rotation
  auto mine = std::find_if(files.begin(), files.end(), [this](const File& file) {
    return file.dev == current_.dev && file.ino == current_.ino;
  });
  std::size_t next = 0;
  if (mine != files.end()) {
    next = static_cast<std::size_t>(mine - files.begin()) + 1;
  } else {
    *warning = "some lines of " + live_path_ + " were rotated away before they could be read";
  }
  close(current_.fd);
  for (std::size_t i = next; i < files.size(); ++i) {
    current_ = files[i];
    files[i].fd = -1;
    offset_ = 0;
    const bool last = i + 1 == files.size();
    read_rest(&out, selector, !last);
    if (!last) close(current_.fd);
  }
  close_all(files);
  return out;
}

}  // namespace deployctl
