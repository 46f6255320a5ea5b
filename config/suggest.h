// "Did you mean" suggestions for misspelt keys and values.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace deployctl {

// Edits (insert, delete, substitute, swap adjacent) needed to turn a into b.
std::size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to typo, if it is close enough: at most 2 edits, or at most a third
// of the candidate's length, and not a complete rewrite. Ties go to the earlier candidate.
std::optional<std::string> closest_match(std::string_view typo,
                                         const std::vector<std::string_view>& candidates);

}  // namespace deployctl
