#include "util/fs.h"

#include <fcntl.h>
#include <glob.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "util/error.h"

namespace muongpt {

namespace fs = std::filesystem;

std::string read_text_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path.string(), ": cannot open for reading: ", std::strerror(errno));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<uint8_t> read_binary_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path.string(), ": cannot open for reading: ", std::strerror(errno));
  const auto size = static_cast<size_t>(in.tellg());
  std::vector<uint8_t> bytes(size);
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    fail(path.string(), ": read failed after ", in.gcount(), " of ", size, " bytes");
  return bytes;
}

void write_all(int fd, const void* data, size_t bytes, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const ssize_t n = ::write(fd, p, bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(what, ": write failed: ", std::strerror(errno));
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
}

static void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not allow it
  ::fsync(fd);
  ::close(fd);
}

void write_file_atomic(const fs::path& path, const std::function<void(int fd)>& write) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) fail(tmp.string(), ": cannot create: ", std::strerror(errno));
  try {
    write(fd);
    if (::fsync(fd) != 0) fail(tmp.string(), ": fsync failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    fail(tmp.string(), ": close failed: ", std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(path.string(), ": cannot rename temporary file into place: ", std::strerror(err));
  }
  fsync_directory(path.parent_path());
}

void write_text_file_atomic(const fs::path& path, const std::string& text) {
  write_file_atomic(path, [&](int fd) { write_all(fd, text.data(), text.size(), path.string()); });
}

std::vector<std::string> glob_files(const std::string& pattern) {
  glob_t result{};
  const int rc = ::glob(pattern.c_str(), 0, nullptr, &result);
  std::vector<std::string> files;
  if (rc == 0) {
    for (size_t i = 0; i < result.gl_pathc; ++i) files.emplace_back(result.gl_pathv[i]);
  }
  globfree(&result);
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace muongpt
