// Boost.Asio, included the one way this project does it. Boost 1.74's awaitable.hpp uses
// std::exchange without including <utility>, which GCC 12 in C++20 mode does not forgive.
#pragma once

#include <utility>

#include <boost/asio.hpp>
