// GPT-2 byte-level BPE (see tokenizer.h for the algorithm and its sources of
// truth). Layout of this file:
//   - GPT-2's byte <-> unicode alphabet (how encoder.json spells bytes)
//   - UTF-8 validation and Python-compatible replacement of invalid bytes
//   - loading: encoder.json -> token bytes, vocab.bpe -> checked merge ranks,
//     and the pair table (left id, right id) -> merged id used by BPE
//   - BPE on one piece: a linear scan for short pieces, a heap for long ones
//   - Session: PCRE2 pre-tokenisation + per-piece lookup / cache / BPE
#include "data/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <functional>
#include <utility>

#include <nlohmann/json.hpp>

#include "data/bpe_tables.h"
#include "util/error.h"
#include "util/fs.h"

#ifdef MUONGPT_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

namespace muongpt {

namespace {

constexpr int kNoMerge = bpe::PairTable::kNone;
// Pieces longer than this use the O(n log n) heap merge instead of the
// O(n^2) scan; both give the same tokens.
constexpr size_t kLinearMergeMaxBytes = 128;
// A session caches the tokens of pieces up to kCacheMaxPieceBytes long and
// empties its cache when it holds kCacheMaxEntries pieces.
constexpr size_t kCacheMaxEntries = 1 << 18;
constexpr size_t kCacheMaxPieceBytes = 256;

// ---------------------------------------------------------------------------
// GPT-2's alphabet: byte b is spelled as the code point b when it is a
// printable, non-space Latin-1 character, else as 256 + n (n counts the other
// bytes in increasing order).
// ---------------------------------------------------------------------------

std::array<uint32_t, 256> byte_to_code_point() {
  std::array<uint32_t, 256> map{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? b : next++;
  }
  return map;
}

// Code point -> byte for the 256 code points of the alphabet, -1 elsewhere.
std::vector<int> code_point_to_byte() {
  std::vector<int> map(512, -1);
  const auto forward = byte_to_code_point();
  for (int b = 0; b < 256; ++b) map[forward[b]] = b;
  return map;
}

// ---------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------

// At s[0..n), n >= 1: the length of the well-formed UTF-8 sequence starting
// there, or minus the length of its maximal invalid subpart (Unicode's
// "maximal subpart" rule, which Python's errors="replace" follows).
int utf8_step(const unsigned char* s, size_t n) {
  const unsigned b = s[0];
  if (b < 0x80) return 1;
  int need = 0;
  unsigned lo = 0x80, hi = 0xBF;
  if (b >= 0xC2 && b <= 0xDF) {
    need = 1;
  } else if (b >= 0xE0 && b <= 0xEF) {
    need = 2;
    if (b == 0xE0) lo = 0xA0;  // no overlong forms
    if (b == 0xED) hi = 0x9F;  // no surrogates
  } else if (b >= 0xF0 && b <= 0xF4) {
    need = 3;
    if (b == 0xF0) lo = 0x90;  // no overlong forms
    if (b == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return -1;
  }
  for (int k = 1; k <= need; ++k) {
    if (static_cast<size_t>(k) >= n || s[k] < lo || s[k] > hi) return -k;
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

bool is_valid_utf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n) {  // skip ASCII eight bytes at a time
      uint64_t w;
      std::memcpy(&w, s + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    const int step = utf8_step(s + i, n - i);
    if (step < 0) return false;
    i += static_cast<size_t>(step);
  }
  return true;
}

// Appends the UTF-8 encoding of code point `cp` (< 0x110000).
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes a well-formed UTF-8 string (as nlohmann::json produces) into code
// points; returns false on a malformed one.
bool decode_utf8(std::string_view text, std::vector<uint32_t>& out) {
  out.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const int step = utf8_step(s + i, text.size() - i);
    if (step < 0) return false;
    uint32_t cp = step == 1 ? s[i] : s[i] & (0x7F >> step);
    for (int k = 1; k < step; ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    out.push_back(cp);
    i += static_cast<size_t>(step);
  }
  return true;
}

}  // namespace

std::string replace_invalid_utf8(std::string_view text) {
  if (is_valid_utf8(text)) return std::string(text);
  std::string out;
  out.reserve(text.size() + 16);
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  size_t i = 0;
  while (i < text.size()) {
    const int step = utf8_step(s + i, text.size() - i);
    if (step > 0) {
      out.append(text.data() + i, static_cast<size_t>(step));
      i += static_cast<size_t>(step);
    } else {
      append_utf8(out, 0xFFFD);
      i += static_cast<size_t>(-step);
    }
  }
  return out;
}

std::string default_tokenizer_dir() { return MUONGPT_SOURCE_DIR "/data/gpt2"; }

// ---------------------------------------------------------------------------
// The loaded vocabulary
// ---------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::vector<size_t> offsets;  // token i's bytes are bytes[offsets[i] .. offsets[i+1])
  std::string bytes;
  bpe::StringTable<int> ids;    // bytes -> id of every mergeable (non-special) token
  bpe::PairTable pairs;         // (left, right) -> id of the token spelled left+right
  std::array<int, 256> byte_token{};
  int eot = -1;
#ifdef MUONGPT_HAVE_PCRE2
  pcre2_code* regex = nullptr;
  bool jit = false;
  ~Impl() { pcre2_code_free(regex); }
#endif

  int size() const { return static_cast<int>(offsets.size()) - 1; }
  std::string_view token(int id) const {
    return std::string_view(bytes).substr(offsets[id], offsets[id + 1] - offsets[id]);
  }
};

namespace {

using Impl = Tokenizer::Impl;

bool is_special(std::string_view key) { return key == "<|endoftext|>" || key == "<|startoftext|>"; }

// encoder.json spells each token's bytes in GPT-2's alphabet.
std::string alphabet_to_bytes(const std::string& key, const std::vector<int>& cp_to_byte,
                              const std::string& file, std::vector<uint32_t>& scratch) {
  if (!decode_utf8(key, scratch)) fail("tokenizer ", file, ": key is not valid UTF-8");
  std::string out;
  out.reserve(scratch.size());
  for (uint32_t cp : scratch) {
    if (cp >= cp_to_byte.size() || cp_to_byte[cp] < 0)
      fail("tokenizer ", file, ": key \"", key, "\" has the character U+", std::hex, cp,
           " that is not in GPT-2's byte alphabet");
    out += static_cast<char>(cp_to_byte[cp]);
  }
  return out;
}

// Streams encoder.json's {"token": id, ...} pairs without building a DOM (a
// 50,257-entry std::map would dominate the load time).
class EncoderJsonReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::vector<std::pair<std::string, int64_t>> entries;
  std::string problem;

  bool key(string_t& k) override {
    key_ = std::move(k);
    return true;
  }
  bool number_integer(number_integer_t v) override { return value(v); }
  bool number_unsigned(number_unsigned_t v) override { return value(static_cast<int64_t>(v)); }
  bool null() override { return wrong(); }
  bool boolean(bool) override { return wrong(); }
  bool number_float(number_float_t, const string_t&) override { return wrong(); }
  bool string(string_t&) override { return wrong(); }
  bool binary(binary_t&) override { return wrong(); }
  bool start_object(std::size_t) override { return ++depth_ == 1 || wrong(); }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override { return wrong(); }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    problem = str("invalid JSON: ", e.what());
    return false;
  }

 private:
  bool value(int64_t id) {
    if (depth_ != 1) return wrong();
    entries.emplace_back(std::move(key_), id);
    return true;
  }
  bool wrong() {
    problem = depth_ == 1 ? str("the id of \"", key_, "\" is not an integer")
                          : std::string("expected a JSON object mapping tokens to ids");
    return false;
  }
  std::string key_;
  int depth_ = 0;
};

void read_encoder_json(const std::string& file, Impl& impl) {
  if (!std::filesystem::exists(file)) fail("tokenizer ", file, ": file not found");
  EncoderJsonReader reader;
  const std::string text = read_text_file(file);
  if (!nlohmann::json::sax_parse(text, &reader)) fail("tokenizer ", file, ": ", reader.problem);
  if (reader.entries.empty()) fail("tokenizer ", file, ": expected a JSON object mapping tokens to ids");
  const size_t n = reader.entries.size();
  std::vector<std::string> tokens(n);
  std::vector<bool> seen(n, false);
  const auto cp_to_byte = code_point_to_byte();
  std::vector<uint32_t> scratch;
  for (const auto& [key, id] : reader.entries) {
    if (id < 0 || id >= static_cast<int64_t>(n))
      fail("tokenizer ", file, ": id ", id, " of \"", key, "\" is outside 0..", n - 1, " (ids must be dense)");
    if (seen[id]) fail("tokenizer ", file, ": id ", id, " is used twice");
    seen[id] = true;
    if (is_special(key)) {
      tokens[id] = key;
      if (key == "<|endoftext|>") impl.eot = static_cast<int>(id);
      continue;
    }
    tokens[id] = alphabet_to_bytes(key, cp_to_byte, file, scratch);
    if (impl.ids.find(tokens[id])) fail("tokenizer ", file, ": \"", key, "\" spells the same bytes as another token");
    impl.ids.insert(tokens[id], static_cast<int>(id));
  }
  if (impl.eot < 0) fail("tokenizer ", file, ": no <|endoftext|> token");
  impl.offsets.reserve(n + 1);
  for (const auto& t : tokens) {
    impl.offsets.push_back(impl.bytes.size());
    impl.bytes += t;
  }
  impl.offsets.push_back(impl.bytes.size());
}

// Checks what tiktoken's loader asserts: the 256 single bytes have ids 0..255
// in alphabet order, and merge i of vocab.bpe makes the token with id 256 + i.
void check_merges(const std::string& file, Impl& impl) {
  if (!std::filesystem::exists(file)) fail("tokenizer ", file, ": file not found");
  const std::string text = read_text_file(file);
  const auto cp_to_byte = code_point_to_byte();
  const auto forward = byte_to_code_point();
  std::vector<int> bytes_by_rank(256);
  for (int b = 0; b < 256; ++b) bytes_by_rank[b] = b;
  std::sort(bytes_by_rank.begin(), bytes_by_rank.end(), [&](int a, int b) { return forward[a] < forward[b]; });
  for (int rank = 0; rank < 256; ++rank) {
    const char byte = static_cast<char>(bytes_by_rank[rank]);
    const int* id = impl.ids.find(std::string_view(&byte, 1));
    if (!id || *id != rank)
      fail("tokenizer: encoder.json gives byte ", bytes_by_rank[rank], " the id ", id ? *id : -1, ", expected ", rank);
    impl.byte_token[static_cast<unsigned char>(byte)] = rank;
  }
  std::vector<uint32_t> scratch;
  size_t line_no = 0, merges = 0, start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line[0] == '#')) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || line.find(' ', space + 1) != std::string::npos)
      fail("tokenizer ", file, ":", line_no, ": expected two tokens separated by one space, got \"", line, "\"");
    const std::string merged = alphabet_to_bytes(line.substr(0, space), cp_to_byte, file, scratch) +
                               alphabet_to_bytes(line.substr(space + 1), cp_to_byte, file, scratch);
    const int* id = impl.ids.find(merged);
    const int expected = static_cast<int>(256 + merges);
    if (!id || *id != expected)
      fail("tokenizer ", file, ":", line_no, ": merge \"", line, "\" has rank ", expected, " but encoder.json gives it ",
           id ? "id " + std::to_string(*id) : std::string("no id"), " (the two files do not belong together)");
    ++merges;
  }
  if (256 + merges != impl.ids.size())
    fail("tokenizer ", file, ": ", merges, " merges + 256 bytes do not account for the ", impl.ids.size(),
         " tokens of encoder.json");
}

// Every way of spelling a token as two tokens becomes a pair entry: BPE may
// merge parts that vocab.bpe never lists together (tiktoken looks up the
// concatenated bytes, and so do we, through this table).
void build_pairs(Impl& impl) {
  std::vector<std::array<int, 3>> entries;
  for (int id = 0; id < impl.size(); ++id) {
    if (id == impl.eot || !impl.ids.find(impl.token(id))) continue;  // specials never merge
    const std::string_view t = impl.token(id);
    for (size_t k = 1; k < t.size(); ++k) {
      const int* left = impl.ids.find(t.substr(0, k));
      const int* right = left ? impl.ids.find(t.substr(k)) : nullptr;
      if (right) entries.push_back({*left, *right, id});
    }
  }
  impl.pairs.reserve(entries.size());
  for (const auto& e : entries) impl.pairs.insert(e[0], e[1], e[2]);
}

#ifdef MUONGPT_HAVE_PCRE2
// tiktoken's gpt2 pattern with \s spelled as the White_Space property (see
// tokenizer.h). PCRE2 before 10.40 has no binary properties; there the same
// 25 code points are listed (Unicode's PropList.txt, unchanged since 6.3).
#if PCRE2_MAJOR > 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR >= 40)
#define MUONGPT_WS_ITEMS "\\p{White_Space}"
#else
#define MUONGPT_WS_ITEMS "\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#endif
#define MUONGPT_WS "[" MUONGPT_WS_ITEMS "]"
#define MUONGPT_NOT_WS "[^" MUONGPT_WS_ITEMS "]"
constexpr const char* kPattern =
    "'(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ?\\p{N}++| ?[^" MUONGPT_WS_ITEMS "\\p{L}\\p{N}]++|" MUONGPT_WS "++$|" MUONGPT_WS
    "+(?!" MUONGPT_NOT_WS ")|" MUONGPT_WS;

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

void compile_regex(Impl& impl) {
  int code = 0;
  PCRE2_SIZE offset = 0;
  impl.regex = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY | PCRE2_NO_UTF_CHECK, &code, &offset,
                             nullptr);
  if (!impl.regex)
    fail("tokenizer: PCRE2 cannot compile the GPT-2 pattern at offset ", offset, ": ", pcre2_message(code));
  impl.jit = pcre2_jit_compile(impl.regex, PCRE2_JIT_COMPLETE) == 0;
}
#endif

}  // namespace

// ---------------------------------------------------------------------------
// BPE on one piece
// ---------------------------------------------------------------------------

struct Tokenizer::Session::State {
  std::vector<int> ids;    // linear merge: current parts
  std::vector<int> ranks;  // linear merge: rank of merging part i with part i+1
  struct Node {
    int id, prev, next;
  };
  std::vector<Node> nodes;  // heap merge: parts as a linked list by byte position
  struct Candidate {
    int rank, pos, left, right;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Candidate> heap;
  struct Span {
    uint32_t offset, length;
  };
  bpe::StringTable<Span> cache;  // piece -> tokens in cached_tokens
  std::vector<int> cached_tokens;
  std::string sanitized;
#ifdef MUONGPT_HAVE_PCRE2
  pcre2_match_data* match = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* jit_stack = nullptr;
  ~State() {
    pcre2_match_data_free(match);
    pcre2_match_context_free(context);
    pcre2_jit_stack_free(jit_stack);
  }
#endif

  // tiktoken's rule, scanning all parts for the lowest rank each round.
  void merge_linear(const Impl& t, const unsigned char* s, size_t n, std::vector<int>& out) {
    ids.resize(n);
    ranks.resize(n);
    for (size_t i = 0; i < n; ++i) ids[i] = t.byte_token[s[i]];
    for (size_t i = 0; i + 1 < n; ++i) ranks[i] = t.pairs.find(ids[i], ids[i + 1]);
    ranks[n - 1] = kNoMerge;
    size_t m = n;
    for (;;) {
      int best = kNoMerge;
      size_t at = 0;
      for (size_t i = 0; i + 1 < m; ++i)
        if (ranks[i] < best) best = ranks[i], at = i;
      if (best == kNoMerge) break;
      ids[at] = best;  // a merged token's rank is its id
      std::copy(ids.begin() + at + 2, ids.begin() + m, ids.begin() + at + 1);
      std::copy(ranks.begin() + at + 2, ranks.begin() + m, ranks.begin() + at + 1);
      --m;
      ranks[at] = at + 1 < m ? t.pairs.find(ids[at], ids[at + 1]) : kNoMerge;
      if (at > 0) ranks[at - 1] = t.pairs.find(ids[at - 1], best);
    }
    out.insert(out.end(), ids.begin(), ids.begin() + m);
  }

  // The same merges in the same order: candidates ordered by (rank, position)
  // in a min-heap; entries whose parts have changed since are skipped.
  void merge_heap(const Impl& t, const unsigned char* s, size_t n, std::vector<int>& out) {
    nodes.resize(n);
    heap.clear();
    for (size_t i = 0; i < n; ++i)
      nodes[i] = Node{t.byte_token[s[i]], static_cast<int>(i) - 1, i + 1 < n ? static_cast<int>(i) + 1 : -1};
    auto push = [&](int pos) {
      const int next = nodes[pos].next;
      if (next < 0) return;
      const int rank = t.pairs.find(nodes[pos].id, nodes[next].id);
      if (rank == kNoMerge) return;
      heap.push_back({rank, pos, nodes[pos].id, nodes[next].id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int>(i));
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      const Candidate c = heap.back();
      heap.pop_back();
      Node& left = nodes[c.pos];
      if (left.id != c.left || left.next < 0 || nodes[left.next].id != c.right) continue;  // stale
      Node& right = nodes[left.next];
      left.id = c.rank;
      left.next = right.next;
      if (right.next >= 0) nodes[right.next].prev = c.pos;
      right.id = -1;
      if (left.prev >= 0) push(left.prev);
      push(c.pos);
    }
    for (int i = 0; i >= 0; i = nodes[i].next) out.push_back(nodes[i].id);
  }

  void encode_piece(const Impl& t, std::string_view piece, std::vector<int>& out) {
    const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
    if (piece.size() == 1) {
      out.push_back(t.byte_token[s[0]]);
      return;
    }
    if (const int* id = t.ids.find(piece)) {
      out.push_back(*id);
      return;
    }
    const bool cacheable = piece.size() <= kCacheMaxPieceBytes;
    if (cacheable) {
      if (const Span* span = cache.find(piece)) {
        out.insert(out.end(), cached_tokens.begin() + span->offset, cached_tokens.begin() + span->offset + span->length);
        return;
      }
    }
    const size_t first = out.size();
    if (piece.size() <= kLinearMergeMaxBytes)
      merge_linear(t, s, piece.size(), out);
    else
      merge_heap(t, s, piece.size(), out);
    if (cacheable) remember(piece, out.data() + first, out.size() - first);
  }

  void remember(std::string_view piece, const int* tokens, size_t n) {
    if (cache.size() >= kCacheMaxEntries) {
      cache.clear();
      cached_tokens.clear();
    }
    cache.insert(piece, Span{static_cast<uint32_t>(cached_tokens.size()), static_cast<uint32_t>(n)});
    cached_tokens.insert(cached_tokens.end(), tokens, tokens + n);
  }
};

// ---------------------------------------------------------------------------
// Session: pre-tokenisation and the per-piece path
// ---------------------------------------------------------------------------

Tokenizer::Session::Session(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)), state_(new State) {
#ifdef MUONGPT_HAVE_PCRE2
  state_->match = pcre2_match_data_create_from_pattern(impl_->regex, nullptr);
  state_->context = pcre2_match_context_create(nullptr);
  if (!state_->match || !state_->context) fail("tokenizer: out of memory creating PCRE2 match data");
  if (impl_->jit) {
    state_->jit_stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (!state_->jit_stack) fail("tokenizer: out of memory creating the PCRE2 JIT stack");
    pcre2_jit_stack_assign(state_->context, nullptr, state_->jit_stack);
  }
#endif
}

Tokenizer::Session::~Session() = default;
Tokenizer::Session::Session(Session&&) noexcept = default;
Tokenizer::Session& Tokenizer::Session::operator=(Session&&) noexcept = default;

std::vector<int> Tokenizer::Session::encode(std::string_view utf8_text) {
  std::vector<int> out;
  encode(utf8_text, out);
  return out;
}

void Tokenizer::Session::encode(std::string_view utf8_text, std::vector<int>& out) {
#ifndef MUONGPT_HAVE_PCRE2
  (void)utf8_text;
  (void)out;
  fail("tokenizer: this muongpt was built without the PCRE2 headers, so it cannot encode text (decoding works); "
       "install PCRE2 (Debian: libpcre2-dev) and rebuild");
#else
  State& st = *state_;
  const Impl& t = *impl_;
  std::string_view text = utf8_text;
  if (!is_valid_utf8(text)) {
    st.sanitized = replace_invalid_utf8(text);
    text = st.sanitized;
  }
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const PCRE2_SIZE length = text.size();
  PCRE2_SIZE pos = 0;
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(st.match);
  while (pos < length) {
    const int rc = t.jit ? pcre2_jit_match(t.regex, subject, length, pos, 0, st.match, st.context)
                         : pcre2_match(t.regex, subject, length, pos, PCRE2_NO_UTF_CHECK, st.match, st.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) fail("tokenizer: PCRE2 match failed at byte ", pos, ": ", pcre2_message(rc));
    const PCRE2_SIZE start = ovector[0], end = ovector[1];
    MUONGPT_CHECK(end > start, "the GPT-2 pattern matched an empty piece");
    st.encode_piece(t, text.substr(start, end - start), out);
    pos = end;
  }
#endif
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

Tokenizer Tokenizer::load(const std::string& dir) {
  auto impl = std::make_shared<Impl>();
  read_encoder_json(dir + "/encoder.json", *impl);
  check_merges(dir + "/vocab.bpe", *impl);
  build_pairs(*impl);
#ifdef MUONGPT_HAVE_PCRE2
  compile_regex(*impl);
#endif
  return Tokenizer(std::move(impl));
}

bool Tokenizer::encoder_available() {
#ifdef MUONGPT_HAVE_PCRE2
  return true;
#else
  return false;
#endif
}

Tokenizer::Session Tokenizer::session() const { return Session(impl_); }

std::vector<int> Tokenizer::encode(std::string_view utf8_text) const { return session().encode(utf8_text); }

std::string Tokenizer::decode(const std::vector<int>& ids) const { return decode(ids.data(), ids.size()); }

std::string Tokenizer::decode(const int* ids, size_t n) const {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= impl_->size())
      fail("decode: token id ", ids[i], " at position ", i, " is outside the vocabulary (0..", impl_->size() - 1, ")");
    out += impl_->token(ids[i]);
  }
  return out;
}

std::string_view Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= impl_->size())
    fail("decode: token id ", id, " is outside the vocabulary (0..", impl_->size() - 1, ")");
  return impl_->token(id);
}

int Tokenizer::eot_token() const { return impl_->eot; }
int Tokenizer::vocab_size() const { return impl_->size(); }

}  // namespace muongpt
