# Fails when a file of the pure core includes an I/O, system or framework header, or reads the
# clock: the core decides, the daemon does (docs/DESIGN.md). Run as
#   cmake -DDIR=<core dir> [-DSTAMP=<file>] -P check_core_includes.cmake   (every .h and .cc)
#   cmake -DFILES=<file> -P check_core_includes.cmake
set(forbidden_includes
  "boost/" "asio" "spdlog" "sdbus-c\\+\\+" "systemd/" "nlohmann/" "sys/" "unistd\\.h" "fcntl\\.h"
  "signal\\.h" "poll\\.h" "dirent\\.h" "netinet/" "arpa/" "pwd\\.h" "grp\\.h" "fstream"
  "iostream" "filesystem" "thread" "mutex" "cstdio" "stdio\\.h" "random")
list(JOIN forbidden_includes "|" alternatives)
set(include_pattern "#[ \t]*include[ \t]*[<\"](${alternatives})")
if(DIR)
  file(GLOB FILES "${DIR}/*.h" "${DIR}/*.cc")
endif()
set(problems "")
foreach(file IN LISTS FILES)
  file(STRINGS "${file}" lines)
  set(number 0)
  foreach(line IN LISTS lines)
    math(EXPR number "${number} + 1")
    if(line MATCHES "${include_pattern}")
      string(APPEND problems "${file}:${number}: the core may not include this (I/O belongs in daemon/): ${line}\n")
    elseif(line MATCHES "::now\\(\\)")
      string(APPEND problems "${file}:${number}: the core may not read the clock; take the time as an argument: ${line}\n")
    endif()
  endforeach()
endforeach()
if(problems)
  message(FATAL_ERROR "pure core check failed:\n${problems}")
endif()
if(STAMP)
  file(TOUCH "${STAMP}")
endif()
