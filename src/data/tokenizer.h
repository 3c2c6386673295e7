// GPT-2 byte-level BPE tokenizer, token for token identical to tiktoken's
// "gpt2" encoding (`encode_ordinary`: <|endoftext|> in the text is plain text).
//
// Encoding a text:
//   1. Invalid UTF-8 is replaced first, exactly like Python's
//      bytes.decode("utf-8", errors="replace"): every maximal invalid
//      subsequence becomes U+FFFD (bytes EF BF BD). Valid text is untouched.
//   2. Pre-tokenisation splits the text with GPT-2's rule (tiktoken's pattern)
//        '(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s
//      run by PCRE2 (UTF + UCP, JIT when available). `\s` is written as
//      \p{White_Space}, the property tiktoken's Rust regex engine uses (PCRE2's
//      own \s would also match U+180E).
//   3. Each piece's UTF-8 bytes become tokens: a piece that is itself a token is
//      that token; otherwise BPE starts from one token per byte and repeatedly
//      merges the adjacent pair whose concatenation is the lowest-ranked token
//      (leftmost on ties) until no adjacent pair forms a token. A token's rank is
//      its id (tiktoken's rule; load() checks that vocab.bpe's 50,000 merges
//      produce exactly these ids, as tiktoken's loader does).
// Decoding concatenates the tokens' bytes (the result may be invalid UTF-8 when
// the ids cut a character).
//
// The encoder needs PCRE2 headers at build time (MUONGPT_HAVE_PCRE2); without
// them encode() throws a clear error, and decoding still works.
// Thread safety: a Tokenizer is immutable after load(); encode() may be called
// from any number of threads. For many calls on one thread, a Session keeps
// the regex match state and a cache of pieces already encoded.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace muongpt {

// MUONGPT_SOURCE_DIR "/data/gpt2": the vocabulary files shipped with muongpt.
std::string default_tokenizer_dir();

// Python's bytes.decode("utf-8", errors="replace") re-encoded as UTF-8:
// returns `text` unchanged when it is valid UTF-8.
std::string replace_invalid_utf8(std::string_view text);

class Tokenizer {
 public:
  struct Impl;

  // Per-thread encoding state (regex match data, piece cache). Not shareable
  // between threads; create one per thread with Tokenizer::session().
  class Session {
   public:
    ~Session();
    Session(Session&&) noexcept;
    Session& operator=(Session&&) noexcept;
    // Appends the tokens of `utf8_text` to `out`.
    void encode(std::string_view utf8_text, std::vector<int>& out);
    std::vector<int> encode(std::string_view utf8_text);

   private:
    friend class Tokenizer;
    struct State;
    explicit Session(std::shared_ptr<const Impl> impl);
    std::shared_ptr<const Impl> impl_;
    std::unique_ptr<State> state_;
  };

  // Reads dir/encoder.json and dir/vocab.bpe; throws Error naming the file and
  // the problem when one is missing, malformed or does not match the other.
  static Tokenizer load(const std::string& dir);

  // False when muongpt was built without PCRE2 (encode() then throws).
  static bool encoder_available();

  Session session() const;
  std::vector<int> encode(std::string_view utf8_text) const;
  // Throws Error naming the position of an id outside [0, vocab_size()).
  std::string decode(const std::vector<int>& ids) const;
  std::string decode(const int* ids, size_t n) const;
  // The bytes of one token.
  std::string_view token_bytes(int id) const;

  // The id of <|endoftext|> (50256 for GPT-2) and the number of ids.
  int eot_token() const;
  int vocab_size() const;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace muongpt
