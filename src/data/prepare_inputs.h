// Inputs of `muongpt prepare`: which files are read, and the documents in them.
//
// An INPUT argument is
//   -            standard input, read to the end: one document;
//   a directory  recursed; regular files ending in .txt or .md are text
//                documents and files ending in .jsonl are JSON lines; other
//                files and names starting with '.' are ignored; files are taken
//                in byte-wise sorted order of their path (chapter_10 before
//                chapter_2), so the order never depends on the file system;
//   FILE.jsonl   JSON lines: one document per line, its "text" string field
//                (blank lines are ignored);
//   any other    a text file: the whole file is one document.
// An argument that does not exist is always an error. Problems inside the
// input (a file that cannot be read, a line that is not JSON or has no "text"
// string) become Documents carrying an `error` naming the file and line, in
// input order, so the caller applies --on-error deterministically.
//
// Reading is sequential; the JSON of a line is parsed later, by
// Document::resolve(), on the encoding threads.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace muongpt {

enum class SourceKind { kText, kJsonLines, kStdin };

struct Source {
  std::string path;
  SourceKind kind = SourceKind::kText;
  size_t input = 0;    // index of the INPUT argument it came from
  bool val = false;    // from a --val argument
  uint64_t bytes = 0;  // size on disk (stdin: bytes read)
  std::shared_ptr<const std::string> content;  // stdin only: read up front
};

struct InputArgument {
  std::string path;
  bool val = false;
};

// Expands INPUT arguments (in order) into sources; reads stdin if "-" is given
// (at most once). Throws Error for a missing argument or a directory without
// usable files.
std::vector<Source> expand_inputs(const std::vector<InputArgument>& inputs);

// "text file", "JSON lines", "stdin"
const char* source_kind_name(SourceKind kind);

struct Document {
  std::string text;         // the document, or the raw line of a JSON-lines file until resolve()
  bool json_line = false;   // `text` still holds the raw JSON line
  std::string error;        // non-empty: this document (or whole file) is bad
  bool whole_file = false;  // the error concerns a whole file (unreadable)
  size_t source = 0;        // index into the sources
  uint64_t line = 0;        // 1-based line of a JSON-lines document
  uint64_t input_bytes = 0; // bytes of input this document occupies (file size, or line + newline)

  // Turns a raw JSON line into its "text" field; sets `error` (with
  // `where`, e.g. "a.jsonl:7") on invalid JSON or a missing "text" string.
  void resolve(const std::string& where);
};

// Reads the documents of the sources in order, in batches.
class DocumentReader {
 public:
  explicit DocumentReader(const std::vector<Source>& sources) : sources_(sources) {}
  // Replaces `batch` with the next documents, up to about `max_bytes` of
  // input or `max_documents`; returns false when nothing is left.
  bool next_batch(std::vector<Document>& batch, uint64_t max_bytes, size_t max_documents);

 private:
  bool read_jsonl_line(Document& doc);
  Document read_whole(const Source& source, size_t index);

  const std::vector<Source>& sources_;
  size_t next_source_ = 0;
  std::ifstream jsonl_;  // the JSON-lines file being read, if any
  uint64_t jsonl_line_ = 0;
};

}  // namespace muongpt
