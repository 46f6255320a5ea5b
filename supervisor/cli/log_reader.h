// Reads one log's files (BASE.log and its rotated BASE.log.N) for `deployctl logs`: the last
// lines across the files, then, to follow, what is written next, across rotations, with no
// line lost or shown twice (edge: file I/O; no supervisor needed). See docs/logs.md.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "log_format.h"

namespace deployctl {

class LogReader {
 public:
  // DIR/BASE.log; nothing is opened yet.
  LogReader(std::string dir, std::string base);
  ~LogReader();
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;

  // Opens the current files; false if there are none (yet).
  bool open();
  // The last `count` complete lines the selector keeps, across the files, oldest first (each
  // ends with '\n'). Reading continues after them. Call once, after open().
  std::vector<std::string> tail(std::size_t count, const logs::Selector& selector);
  // The complete lines written since the last call, in order; follows BASE.log to the file
  // that replaces it at a rotation, after reading the old one to its end. *warning is set if
  // the reader fell so far behind that whole rotated files were dropped before it read them.
  std::vector<std::string> poll(const logs::Selector& selector, std::string* warning);

  // The base names of every BASE.log in dir, sorted.
  static std::vector<std::string> bases_in(const std::string& dir);

 private:
  struct File {
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  // Every file of the log, oldest first, opened and checked to be one consistent generation
  // (no rotation happened while they were opened); the live file last, if it exists.
  bool snapshot(std::vector<File>* files, bool* has_live);
  void read_rest(std::vector<std::string>* out, const logs::Selector& selector, bool at_end);
  void close_all(std::vector<File>& files);

  std::string dir_, base_, live_path_;
  File current_;
  off_t offset_ = 0;
  std::string partial_;
};

}  // namespace deployctl
