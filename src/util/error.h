// Errors with context.
//
// Every failure the user can cause (a bad config key, a foreign shard, a
// truncated checkpoint) is reported as muongpt::Error with a message that
// names the file, key or value involved. `str(...)` builds such messages from
// any streamable pieces.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace muongpt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <class... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  throw Error(str(parts...));
}

// Internal invariant; a failure here is a bug in muongpt, not in the input.
#define MUONGPT_CHECK(cond, ...)                                                   \
  do {                                                                             \
    if (!(cond))                                                                   \
      ::muongpt::fail("internal check failed: " #cond " at " __FILE__ ":", __LINE__, \
                      " ", ##__VA_ARGS__);                                         \
  } while (0)

}  // namespace muongpt
