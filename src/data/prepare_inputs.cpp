// Inputs of `muongpt prepare` (see prepare_inputs.h): argument expansion,
// sequential reading of documents, and parsing of JSON lines.
#include "data/prepare_inputs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace muongpt {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

SourceKind kind_of_file(const std::string& path) {
  return ends_with(path, ".jsonl") ? SourceKind::kJsonLines : SourceKind::kText;
}

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

uint64_t size_or_zero(const std::string& path) {
  std::error_code ec;
  const auto size = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(size);
}

// The usable files under `dir`, sorted byte-wise by path.
std::vector<std::string> files_under(const std::string& dir) {
  std::vector<std::string> files;
  try {
    auto it = fs::recursive_directory_iterator(dir);
    for (auto end = fs::recursive_directory_iterator(); it != end; ++it) {
      if (is_hidden(it->path())) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      const std::string path = it->path().string();
      if (it->is_regular_file() && (ends_with(path, ".txt") || ends_with(path, ".md") || ends_with(path, ".jsonl")))
        files.push_back(path);
    }
  } catch (const fs::filesystem_error& e) {
    fail("input ", dir, ": cannot list the directory: ", e.code().message(), " (", e.path1().string(), ")");
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Reads a whole file with read(2), so that every I/O error is seen; returns
// the error's description, or "" on success.
std::string read_file(const std::string& path, std::string& out) {
  out.clear();
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return std::strerror(errno);
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buffer[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string problem = std::strerror(errno);
      ::close(fd);
      return problem;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return "";
}

std::shared_ptr<const std::string> read_stdin() {
  std::ostringstream buffer;
  buffer << std::cin.rdbuf();
  if (std::cin.bad()) fail("input -: reading standard input failed");
  return std::make_shared<const std::string>(buffer.str());
}

}  // namespace

const char* source_kind_name(SourceKind kind) {
  switch (kind) {
    case SourceKind::kText: return "text file";
    case SourceKind::kJsonLines: return "JSON lines";
    case SourceKind::kStdin: return "stdin";
  }
  return "?";
}

std::vector<Source> expand_inputs(const std::vector<InputArgument>& inputs) {
  std::vector<Source> sources;
  bool stdin_used = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto& arg = inputs[i];
    if (arg.path == "-") {
      if (stdin_used) fail("input -: standard input can be given only once");
      stdin_used = true;
      Source s{"-", SourceKind::kStdin, i, arg.val, 0, read_stdin()};
      s.bytes = s.content->size();
      sources.push_back(std::move(s));
      continue;
    }
    std::error_code ec;
    const auto status = fs::status(arg.path, ec);
    if (!fs::exists(status)) fail("input ", arg.path, ": no such file or directory");
    if (fs::is_directory(status)) {
      const auto files = files_under(arg.path);
      if (files.empty()) fail("input ", arg.path, ": directory holds no .txt, .md or .jsonl files");
      for (const auto& f : files) sources.push_back({f, kind_of_file(f), i, arg.val, size_or_zero(f), nullptr});
    } else {
      sources.push_back({arg.path, kind_of_file(arg.path), i, arg.val, size_or_zero(arg.path), nullptr});
    }
  }
  return sources;
}

void Document::resolve(const std::string& where) {
  if (!json_line || !error.empty()) return;
  json_line = false;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    error = str(where, ": invalid JSON: ", e.what());
    text.clear();
    return;
  }
  const auto it = j.is_object() ? j.find("text") : j.end();
  if (it == j.end() || !it->is_string()) {
    error = str(where, ": no \"text\" string field");
    text.clear();
    return;
  }
  text = it->get<std::string>();
}

Document DocumentReader::read_whole(const Source& source, size_t index) {
  Document doc;
  doc.source = index;
  doc.input_bytes = source.bytes;
  if (source.kind == SourceKind::kStdin) {
    doc.text = *source.content;
    return doc;
  }
  const std::string problem = read_file(source.path, doc.text);
  if (!problem.empty()) {
    doc.text.clear();
    doc.error = str(source.path, ": cannot read: ", problem);
    doc.whole_file = true;
  }
  return doc;
}

// Reads the next non-blank line of the open JSON-lines file into `doc`;
// false at the end of the file (which is then closed).
bool DocumentReader::read_jsonl_line(Document& doc) {
  std::string line;
  while (std::getline(jsonl_, line)) {
    ++jsonl_line_;
    const uint64_t bytes = line.size() + 1;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    doc.text = std::move(line);
    doc.json_line = true;
    doc.line = jsonl_line_;
    doc.input_bytes = bytes;
    return true;
  }
  const bool failed = jsonl_.bad();
  jsonl_.close();
  if (failed) {
    doc.error = str(sources_[next_source_].path, ":", jsonl_line_ + 1, ": read error: ", std::strerror(errno));
    doc.whole_file = true;
    return true;
  }
  return false;
}

bool DocumentReader::next_batch(std::vector<Document>& batch, uint64_t max_bytes, size_t max_documents) {
  batch.clear();
  uint64_t bytes = 0;
  while (next_source_ < sources_.size() && bytes < max_bytes && batch.size() < max_documents) {
    const Source& source = sources_[next_source_];
    if (source.kind != SourceKind::kJsonLines) {
      batch.push_back(read_whole(source, next_source_++));
      bytes += batch.back().input_bytes;
      continue;
    }
    if (!jsonl_.is_open()) {
      jsonl_.open(source.path, std::ios::binary);
      jsonl_line_ = 0;
      if (!jsonl_) {
        Document doc;
        doc.source = next_source_++;
        doc.error = str(source.path, ": cannot read: ", std::strerror(errno));
        doc.whole_file = true;
        doc.input_bytes = source.bytes;
        batch.push_back(std::move(doc));
        continue;
      }
    }
    Document doc;
    doc.source = next_source_;
    const bool more = read_jsonl_line(doc);
    const bool file_failed = more && doc.whole_file;
    if (more) {
      bytes += doc.input_bytes;
      batch.push_back(std::move(doc));
    }
    if (!more || file_failed) {
      if (jsonl_.is_open()) jsonl_.close();
      ++next_source_;
    }
  }
  return !batch.empty();
}

}  // namespace muongpt
