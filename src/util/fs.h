// File helpers: whole-file reads and atomic writes.
//
// write_file_atomic writes to `path.tmp`, fsyncs, renames over `path` and
// fsyncs the directory, so a reader sees either the old or the new file,
// never a half-written one, even if the process is killed mid-write.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace muongpt {

std::string read_text_file(const std::filesystem::path& path);
std::vector<uint8_t> read_binary_file(const std::filesystem::path& path);

// Calls `write(fd)` to fill a temporary file next to `path`, then commits it.
// `write` receives a POSIX file descriptor and must write the whole content
// with write_all(). On any error the temporary file is removed.
void write_file_atomic(const std::filesystem::path& path,
                       const std::function<void(int fd)>& write);
void write_text_file_atomic(const std::filesystem::path& path, const std::string& text);

// write(2) until all bytes are written; throws Error naming `what` on failure.
void write_all(int fd, const void* data, size_t bytes, const std::string& what);

// Sorted list of files matching a glob pattern (POSIX glob syntax).
std::vector<std::string> glob_files(const std::string& pattern);

}  // namespace muongpt
