// GPT-2 tokenizer: token-for-token equality with tiktoken's gpt2 encoding
// (fixtures in tests/fixtures/tokenizer/, written by
// scripts/make_tokenizer_fixture.py), round trips, invalid UTF-8, errors and
// concurrent use.
//
// Corpora: the fixture covers every file of the shared corpora. They are read
// from $MUONGPT_CORPORA_DIR, else from ../shared/data/corpora beside the
// repository (CI and developer machines have it); without either (or with
// MUONGPT_CORPORA_DIR=none), only the sample files committed in
// tests/fixtures/tokenizer/texts/ are checked. The test prints which it did.
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <thread>

#include "data/tokenizer.h"
#include "test_support.h"
#include "util/error.h"
#include "util/fs.h"

using muongpt::Tokenizer;
using muongpt::test::require_error;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(muongpt::default_tokenizer_dir());
  return tokenizer;
}

uint64_t fnv1a64(const int* ids, size_t n) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h = (h ^ (static_cast<uint32_t>(ids[i]) & 0xFF)) * 0x100000001B3ull;
    h = (h ^ (static_cast<uint32_t>(ids[i]) >> 8)) * 0x100000001B3ull;
  }
  return h;
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

std::string fixture(const std::string& name) { return muongpt::test::test_path("fixtures/tokenizer/" + name); }

// A printable excerpt of decoded bytes for failure messages.
std::string excerpt(const std::vector<int>& ids, size_t from, size_t count) {
  from = std::min(from, ids.size());
  const size_t to = std::min(ids.size(), from + count);
  std::vector<int> part(ids.begin() + static_cast<long>(from), ids.begin() + static_cast<long>(to));
  std::string text = gpt2().decode(part);
  if (text.size() > 400) text = text.substr(0, 400) + "...";
  return "\"" + text + "\"";
}

std::string ids_around(const std::vector<int>& ids, size_t at) {
  std::string s;
  for (size_t i = at >= 3 ? at - 3 : 0; i < std::min(ids.size(), at + 4); ++i) s += std::to_string(ids[i]) + " ";
  return s;
}

// Empty when `ids` matches the fixture entry, else where they first differ.
std::string compare_with_entry(const json& entry, const std::vector<int>& ids) {
  const auto expected_tokens = entry.at("tokens").get<size_t>();
  const std::string expected_hash = entry.at("hash").get<std::string>();
  const std::string got_hash = hex64(fnv1a64(ids.data(), ids.size()));
  if (ids.size() == expected_tokens && got_hash == expected_hash) return "";
  const size_t block = 512;
  const auto& blocks = entry.at("block_hashes");
  size_t k = 0;
  for (; k < blocks.size(); ++k) {
    const size_t from = k * block, n = std::min(block, ids.size() > from ? ids.size() - from : 0);
    char got[9];
    std::snprintf(got, sizeof(got), "%08llx",
                  static_cast<unsigned long long>(fnv1a64(ids.data() + std::min(from, ids.size()), n) & 0xFFFFFFFF));
    if (blocks[k].get<std::string>() != got) break;
  }
  return muongpt::str(entry.at("path").get<std::string>(), ": expected ", expected_tokens, " tokens (hash ",
                      expected_hash, "), got ", ids.size(), " (hash ", got_hash, "); first difference in tokens [",
                      k * block, ", ", (k + 1) * block, "), whose text (our tokens) begins ", excerpt(ids, k * block, 40));
}

// "" when only the committed samples are to be checked.
std::string corpora_dir() {
  if (const char* env = std::getenv("MUONGPT_CORPORA_DIR"); env && *env) {
    if (std::string(env) == "none") return "";
    INFO("MUONGPT_CORPORA_DIR=" << env << " is not a directory");
    REQUIRE(fs::is_directory(env));
    return env;
  }
  const fs::path shared = fs::path(MUONGPT_SOURCE_DIR) / ".." / "shared" / "data" / "corpora";
  return fs::is_directory(shared) ? shared.lexically_normal().string() : "";
}

std::set<std::string> txt_files_under(const std::string& dir) {
  std::set<std::string> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".txt") files.insert(fs::relative(e.path(), dir).generic_string());
  return files;
}

struct AdversarialCase {
  std::string name, input;
  std::vector<int> ids;
};

std::vector<AdversarialCase> adversarial_cases() {
  std::ifstream in(fixture("adversarial.jsonl"));
  REQUIRE(in.good());
  std::vector<AdversarialCase> cases;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    cases.push_back({j.at("name"), from_hex(j.at("hex")), j.at("ids").get<std::vector<int>>()});
  }
  return cases;
}

}  // namespace

TEST_CASE("tokenizer: vocabulary basics", "[tokenizer]") {
  const Tokenizer& t = gpt2();
  REQUIRE(t.vocab_size() == 50257);
  REQUIRE(t.eot_token() == 50256);
  REQUIRE(t.token_bytes(50256) == "<|endoftext|>");
  REQUIRE(t.token_bytes(0) == "!");
  // byte tokens spell single bytes, including those GPT-2's alphabet remaps
  REQUIRE(t.decode({188}) == std::string(1, '\0'));
  REQUIRE(t.decode({220}) == " ");
}

TEST_CASE("tokenizer: adversarial cases equal tiktoken", "[tokenizer]") {
  const Tokenizer& t = gpt2();
  const auto cases = adversarial_cases();
  REQUIRE(cases.size() > 100);
  if (!Tokenizer::encoder_available()) {
    require_error([&] { t.encode("x"); }, {"PCRE2"});
    std::cout << "tokenizer: built without PCRE2; checked that encode() reports it\n";
    return;
  }
  auto session = t.session();
  size_t tokens = 0;
  for (const auto& c : cases) {
    const std::vector<int> got = session.encode(c.input);
    size_t at = 0;
    while (at < got.size() && at < c.ids.size() && got[at] == c.ids[at]) ++at;
    INFO("case \"" << c.name << "\": first difference at token " << at << " of " << c.ids.size() << "; expected "
                   << ids_around(c.ids, at) << "got " << ids_around(got, at));
    REQUIRE(got == c.ids);
    REQUIRE(t.encode(c.input) == c.ids);  // a fresh session agrees with a warm one
    tokens += got.size();
  }
  std::cout << "tokenizer: " << cases.size() << " adversarial cases (" << tokens << " tokens) equal tiktoken\n";
}

TEST_CASE("tokenizer: corpora equal tiktoken", "[tokenizer]") {
  if (!Tokenizer::encoder_available()) return;  // reported by the adversarial test
  const json fx = json::parse(muongpt::read_text_file(fixture("corpora.json")));
  const auto& files = fx.at("files");
  REQUIRE(files.size() > 0);
  auto session = gpt2().session();
  std::vector<std::string> mismatches;
  auto check = [&](const json& entry, const std::string& path) {
    const std::string text = muongpt::read_text_file(path);
    INFO(path);
    REQUIRE(text.size() == entry.at("bytes").get<size_t>());
    const std::string diff = compare_with_entry(entry, session.encode(text));
    if (!diff.empty()) mismatches.push_back(diff);
  };

  // the committed samples, always
  size_t samples = 0;
  for (const auto& entry : files) {
    const std::string path = fixture("texts/" + entry.at("path").get<std::string>());
    if (fs::exists(path)) check(entry, path), ++samples;
  }
  REQUIRE(samples >= 3);

  const std::string dir = corpora_dir();
  if (dir.empty()) {
    std::cout << "tokenizer: corpora not used (set MUONGPT_CORPORA_DIR or provide ../shared/data/corpora); checked the "
              << samples << " committed sample files only\n";
  } else {
    std::set<std::string> on_disk = txt_files_under(dir);
    size_t tokens = 0;
    for (const auto& entry : files) {
      const std::string rel = entry.at("path");
      INFO("corpus folder " << dir << " lacks " << rel);
      REQUIRE(on_disk.erase(rel) == 1);
      check(entry, dir + "/" + rel);
      tokens += entry.at("tokens").get<size_t>();
    }
    INFO("files not in the fixture (regenerate it with scripts/make_tokenizer_fixture.py): "
         << (on_disk.empty() ? "" : *on_disk.begin()));
    REQUIRE(on_disk.empty());
    std::cout << "tokenizer: all " << files.size() << " corpus files of " << dir << " (" << tokens
              << " tokens) checked against tiktoken\n";
  }
  for (size_t i = 0; i < mismatches.size() && i < 5; ++i) std::cout << "MISMATCH " << mismatches[i] << "\n";
  INFO(mismatches.size() << " files differ from tiktoken; first: " << (mismatches.empty() ? "" : mismatches[0]));
  REQUIRE(mismatches.empty());
}

TEST_CASE("tokenizer: decode(encode(x)) gives x back", "[tokenizer]") {
  if (!Tokenizer::encoder_available()) return;
  const Tokenizer& t = gpt2();
  for (const auto& c : adversarial_cases()) {
    INFO("case " << c.name);
    REQUIRE(t.decode(t.encode(c.input)) == muongpt::replace_invalid_utf8(c.input));
  }
  const std::string chapter = muongpt::read_text_file(fixture("texts/moby-dick/chapter_1.txt"));
  REQUIRE(t.decode(t.encode(chapter)) == chapter);
  // random valid UTF-8 from a mix of scripts
  std::mt19937 gen(5);
  const std::vector<std::string> atoms = {"a", "Z", " ", "  ", "\n", "\t", "'s", "'", "9", "42", "é", "ж", "字", "🙂",
                                          "👍🏽", "\u0301", "\u00a0", "\u3000", "!", "..", "<|endoftext|>"};
  for (int trial = 0; trial < 300; ++trial) {
    std::string s;
    const int n = static_cast<int>(gen() % 40);
    for (int i = 0; i < n; ++i) s += atoms[gen() % atoms.size()];
    INFO("input: " << s);
    const auto ids = t.encode(s);
    REQUIRE(t.decode(ids) == s);
    for (int id : ids) REQUIRE(id != t.eot_token());  // <|endoftext|> in text is plain text
  }
}

TEST_CASE("tokenizer: invalid UTF-8 is replaced like Python's errors='replace'", "[tokenizer]") {
  using muongpt::replace_invalid_utf8;
  const std::string fffd = "\xEF\xBF\xBD";
  REQUIRE(replace_invalid_utf8("plain ascii") == "plain ascii");
  REQUIRE(replace_invalid_utf8("caf\xC3\xA9") == "caf\xC3\xA9");
  REQUIRE(replace_invalid_utf8("\x80") == fffd);
  REQUIRE(replace_invalid_utf8("\xE2\x82\x28") == fffd + "(");            // truncated 3-byte: one U+FFFD
  REQUIRE(replace_invalid_utf8("\xF0\x9F\x98") == fffd);                  // truncated 4-byte: one U+FFFD
  REQUIRE(replace_invalid_utf8("\xC0\xAF") == fffd + fffd);              // overlong: each byte
  REQUIRE(replace_invalid_utf8("\xED\xA0\x80") == fffd + fffd + fffd);   // surrogate: each byte
  REQUIRE(replace_invalid_utf8("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);
  REQUIRE(replace_invalid_utf8("ab\xC3") == "ab" + fffd);
}

TEST_CASE("tokenizer: decode rejects ids outside the vocabulary", "[tokenizer]") {
  const Tokenizer& t = gpt2();
  require_error([&] { t.decode({464, 50257}); }, {"token id 50257", "position 1", "0..50256"});
  require_error([&] { t.decode({-1}); }, {"token id -1", "position 0"});
  require_error([&] { t.token_bytes(70000); }, {"token id 70000"});
}

TEST_CASE("tokenizer: load reports missing and malformed files", "[tokenizer]") {
  const auto dir = muongpt::test::scratch_dir("tokenizer_load");
  require_error([&] { Tokenizer::load((dir / "none").string()); }, {"encoder.json", "not found"});

  muongpt::write_text_file_atomic(dir / "encoder.json", "{\"a\": 0,");
  require_error([&] { Tokenizer::load(dir.string()); }, {"encoder.json", "invalid JSON"});

  muongpt::write_text_file_atomic(dir / "encoder.json", "{\"a\": \"zero\"}");
  require_error([&] { Tokenizer::load(dir.string()); }, {"encoder.json", "the id of \"a\" is not an integer"});

  muongpt::write_text_file_atomic(dir / "encoder.json", "[1, 2]");
  require_error([&] { Tokenizer::load(dir.string()); }, {"encoder.json", "expected a JSON object"});

  muongpt::write_text_file_atomic(dir / "encoder.json", "{\"a\": 0, \"b\": 5}");
  require_error([&] { Tokenizer::load(dir.string()); }, {"encoder.json", "id 5", "outside 0..1"});

  muongpt::write_text_file_atomic(dir / "encoder.json", "{\"a\": 0, \"b\": 1}");
  require_error([&] { Tokenizer::load(dir.string()); }, {"encoder.json", "no <|endoftext|>"});

  fs::copy_file(muongpt::default_tokenizer_dir() + "/encoder.json", dir / "encoder.json",
                fs::copy_options::overwrite_existing);
  require_error([&] { Tokenizer::load(dir.string()); }, {"vocab.bpe", "not found"});

  // two merges swapped: the ranks no longer match encoder.json's ids
  std::string merges = muongpt::read_text_file(muongpt::default_tokenizer_dir() + "/vocab.bpe");
  const size_t l2 = merges.find('\n') + 1, l3 = merges.find('\n', l2) + 1, l4 = merges.find('\n', l3) + 1;
  const std::string swapped =
      merges.substr(0, l2) + merges.substr(l3, l4 - l3) + merges.substr(l2, l3 - l2) + merges.substr(l4);
  muongpt::write_text_file_atomic(dir / "vocab.bpe", swapped);
  require_error([&] { Tokenizer::load(dir.string()); }, {"vocab.bpe:2", "do not belong together"});
  fs::remove_all(dir);
}

TEST_CASE("tokenizer: concurrent encoding equals serial encoding", "[tokenizer]") {
  if (!Tokenizer::encoder_available()) return;
  const Tokenizer& t = gpt2();
  std::vector<std::string> texts;
  for (const char* f : {"moby-dick/chapter_1.txt", "moby-dick/extracts.txt", "sotu/1790_george_washington_n.txt"})
    texts.push_back(muongpt::read_text_file(fixture(std::string("texts/") + f)));
  for (const auto& c : adversarial_cases()) texts.push_back(c.input);
  std::vector<std::vector<int>> serial;
  for (const auto& s : texts) serial.push_back(t.encode(s));

  std::vector<std::vector<std::vector<int>>> results(4);
  std::vector<std::thread> threads;
  for (size_t w = 0; w < results.size(); ++w) {
    threads.emplace_back([&, w] {
      auto session = t.session();
      for (size_t r = 0; r < 3; ++r)  // reversed order per thread, shared const tokenizer
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (w % 2) ? texts.size() - 1 - i : i;
          auto ids = (r == 1) ? t.encode(texts[k]) : session.encode(texts[k]);
          if (r == 2) results[w].push_back(std::move(ids));
        }
    });
  }
  for (auto& th : threads) th.join();
  for (size_t w = 0; w < results.size(); ++w)
    for (size_t i = 0; i < texts.size(); ++i) {
      const size_t k = (w % 2) ? texts.size() - 1 - i : i;
      REQUIRE(results[w][i] == serial[k]);
    }
}
