// muongpt prepare (data/prepare.h) on small inputs written by the tests:
// document order and <|endoftext|> placement for text, directory and
// JSON-lines inputs; shard splitting; the two validation splits; the manifest;
// identical output for any thread count; bad input with --on-error stop/skip;
// no partial or temporary files left behind.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "test_support.h"
#include "util/fs.h"

using namespace muongpt;
using muongpt::test::require_error;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const Tokenizer& gpt2() {
  static const Tokenizer tokenizer = Tokenizer::load(default_tokenizer_dir());
  return tokenizer;
}

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// The tokens prepare must produce for these documents, in this order.
std::vector<uint16_t> expected_stream(const std::vector<std::string>& documents) {
  std::vector<uint16_t> out;
  for (const auto& d : documents) {
    out.push_back(kEndOfText);
    for (int id : gpt2().encode(d)) out.push_back(static_cast<uint16_t>(id));
  }
  return out;
}

// All tokens of DIR/<split>_*.bin, concatenated in file order.
std::vector<uint16_t> read_split(const fs::path& dir, const std::string& split) {
  std::vector<uint16_t> out;
  for (const auto& f : glob_files((dir / (split + "_*.bin")).string())) {
    Shard shard(f);
    out.insert(out.end(), shard.tokens(), shard.tokens() + shard.size());
  }
  return out;
}

json manifest(const fs::path& dir) { return json::parse(read_text_file(dir / "manifest.json")); }

PrepareOptions options(const std::vector<std::string>& inputs, const fs::path& out) {
  PrepareOptions o;
  o.inputs = inputs;
  o.out_dir = out.string();
  o.threads = 2;
  return o;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// An input file that cannot be read, whoever runs the test (root reads any
// mode-000 file, but not /proc/self/mem from offset 0).
std::string unreadable_file(const fs::path& dir) {
  if (::geteuid() != 0) {
    const fs::path p = dir / "locked.txt";
    write(p, "secret");
    fs::permissions(p, fs::perms::none);
    return p.string();
  }
  return "/proc/self/mem";
}

}  // namespace

TEST_CASE("prepare: text, directory and JSON-lines inputs, <|endoftext|> before each document", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_inputs");
  write(dir / "single.txt", "A single text file.\n");
  write(dir / "corpus/b.txt", "Bee.");
  write(dir / "corpus/a.md", "# Alpha\n\ncafé");
  write(dir / "corpus/sub/c.txt", "See 'S 123");
  write(dir / "corpus/notes.csv", "ignored,file");  // not .txt/.md/.jsonl
  write(dir / "corpus/.hidden.txt", "ignored");
  write(dir / "corpus/.git/x.txt", "ignored");
  write(dir / "corpus/z.jsonl", "{\"text\": \"line one\", \"id\": 1}\n\n{\"text\": \"line two\\n\"}\n");
  write(dir / "empty.txt", "");
  write(dir / "invalid.txt", "bad \xff utf-8");

  const auto out = dir / "out";
  auto o = options({(dir / "single.txt").string(), (dir / "corpus").string(), (dir / "empty.txt").string(),
                    (dir / "invalid.txt").string()},
                   out);
  const PrepareSummary s = prepare_shards(o);
  // directory files in byte-wise path order; JSON lines in line order; an
  // empty file is a document of its own (just <|endoftext|>)
  const std::vector<std::string> docs = {"A single text file.\n", "# Alpha\n\ncafé", "Bee.", "See 'S 123", "line one",
                                         "line two\n", "", "bad \xff utf-8"};
  const auto expected = expected_stream(docs);
  REQUIRE(read_split(out, "train") == expected);
  REQUIRE(read_split(out, "val").empty());
  REQUIRE(s.train.documents == docs.size());
  REQUIRE(s.train.tokens == expected.size());
  REQUIRE(files_in(out) == std::vector<std::string>{"manifest.json", "train_000000.bin"});

  const json m = manifest(out);
  REQUIRE(m["tokens"] == expected.size());
  REQUIRE(m["documents"] == docs.size());
  REQUIRE(m["tokenizer"]["eot_token"] == 50256);
  REQUIRE(m["train"]["shards"][0]["file"] == "train_000000.bin");
  REQUIRE(m["train"]["shards"][0]["documents"] == docs.size());
  REQUIRE(m["inputs"].size() == 4);
  REQUIRE(m["inputs"][1]["kind"] == "directory");
  REQUIRE(m["inputs"][1]["files"] == 4);
  REQUIRE(m["inputs"][1]["documents"] == 5);
  REQUIRE(m["val"]["tokens"] == 0);
  fs::remove_all(dir);
}

TEST_CASE("prepare: documents span shards of --shard-tokens tokens", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_shards");
  std::vector<std::string> docs;
  std::string jsonl;
  for (int i = 0; i < 40; ++i) {
    docs.push_back("Document number " + std::to_string(i) + std::string(static_cast<size_t>(i % 7), '!') + " ends.");
    jsonl += json({{"text", docs.back()}}).dump() + "\n";
  }
  write(dir / "docs.jsonl", jsonl);
  auto o = options({(dir / "docs.jsonl").string()}, dir / "out");
  o.shard_tokens = 37;
  const PrepareSummary s = prepare_shards(o);
  const auto expected = expected_stream(docs);
  REQUIRE(read_split(dir / "out", "train") == expected);

  const auto files = glob_files((dir / "out/train_*.bin").string());
  REQUIRE(files.size() == (expected.size() + 36) / 37);
  const json m = manifest(dir / "out");
  REQUIRE(m["train"]["shards"].size() == files.size());
  uint64_t documents = 0;
  for (size_t k = 0; k < files.size(); ++k) {
    Shard shard(files[k]);
    const bool last = k + 1 == files.size();
    INFO("shard " << k);
    REQUIRE((last ? shard.size() <= 37 : shard.size() == 37));
    REQUIRE(fs::path(files[k]).filename() == shard_file_name("train", k));
    REQUIRE(m["train"]["shards"][k]["tokens"] == shard.size());
    // documents of a shard = the <|endoftext|> tokens in it
    REQUIRE(m["train"]["shards"][k]["documents"] == scan_tokens(shard.tokens(), shard.size()).end_of_text);
    documents += m["train"]["shards"][k]["documents"].get<uint64_t>();
  }
  REQUIRE(documents == docs.size());
  REQUIRE(s.train.shards.size() == files.size());
  fs::remove_all(dir);
}

TEST_CASE("prepare: validation split from --val inputs", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_val");
  write(dir / "train1.txt", "Training text one.");
  write(dir / "train2.txt", "Training text two.");
  write(dir / "heldout.jsonl", "{\"text\": \"held out A\"}\n{\"text\": \"held out B\"}\n");
  auto o = options({(dir / "train1.txt").string(), (dir / "train2.txt").string()}, dir / "out");
  o.val_inputs = {(dir / "heldout.jsonl").string()};
  prepare_shards(o);
  REQUIRE(read_split(dir / "out", "train") == expected_stream({"Training text one.", "Training text two."}));
  REQUIRE(read_split(dir / "out", "val") == expected_stream({"held out A", "held out B"}));
  const json m = manifest(dir / "out");
  REQUIRE(m["val"]["documents"] == 2);
  REQUIRE(m["train"]["documents"] == 2);
  REQUIRE(m["inputs"][0]["split"] == "val");  // --val inputs come first
  REQUIRE(m["inputs"][1]["split"] == "train");

  o.val_fraction = 0.5;
  require_error([&] { prepare_shards(o); }, {"--val-fraction and --val cannot be combined"});
  fs::remove_all(dir);
}

TEST_CASE("prepare: --val-fraction takes the leading documents by input bytes", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_fraction");
  std::vector<std::string> docs, paths;
  for (int i = 0; i < 5; ++i) {
    docs.push_back(std::string(99, static_cast<char>('a' + i)) + "\n");  // 100 bytes each
    paths.push_back((dir / ("d" + std::to_string(i) + ".txt")).string());
    write(paths.back(), docs.back());
  }
  struct Case {
    double fraction;
    size_t val_docs;
  };
  // a document is val while the bytes before it are under F * 500
  for (const Case c : {Case{0.1, 1}, Case{0.2, 1}, Case{0.21, 2}, Case{0.5, 3}, Case{0.9, 5}, Case{0.0, 0}}) {
    INFO("fraction " << c.fraction);
    auto o = options(paths, dir / "out");
    o.val_fraction = c.fraction;
    o.overwrite = true;
    prepare_shards(o);
    const std::vector<std::string> val(docs.begin(), docs.begin() + static_cast<long>(c.val_docs));
    const std::vector<std::string> train(docs.begin() + static_cast<long>(c.val_docs), docs.end());
    REQUIRE(read_split(dir / "out", "val") == expected_stream(val));
    REQUIRE(read_split(dir / "out", "train") == expected_stream(train));
    REQUIRE(manifest(dir / "out")["val"]["documents"] == c.val_docs);
  }
  fs::remove_all(dir);
}

TEST_CASE("prepare: the output does not depend on the thread count", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_threads");
  // more documents than one batch holds, of uneven sizes
  std::string jsonl;
  for (int i = 0; i < 70000; ++i) {
    std::string text = "doc " + std::to_string(i * 7919 % 100003);
    if (i % 1000 == 0) text += std::string(static_cast<size_t>(i % 5000), 'x') + " tail";
    jsonl += json({{"text", text}}).dump() + "\n";
  }
  write(dir / "many.jsonl", jsonl);
  write(dir / "texts/a.txt", read_text_file(test::test_path("fixtures/tokenizer/texts/moby-dick/chapter_1.txt")));
  write(dir / "texts/b.txt", read_text_file(test::test_path("fixtures/tokenizer/texts/moby-dick/extracts.txt")));
  std::vector<std::vector<uint8_t>> outputs;
  for (int threads : {1, 2, 3}) {
    auto o = options({(dir / "texts").string(), (dir / "many.jsonl").string()}, dir / ("out" + std::to_string(threads)));
    o.threads = threads;
    o.shard_tokens = 100000;
    o.val_fraction = 0.05;
    o.command = "same";
    prepare_shards(o);
    std::vector<uint8_t> all;
    for (const auto& name : files_in(o.out_dir)) {
      const auto bytes = read_binary_file(fs::path(o.out_dir) / name);
      all.insert(all.end(), name.begin(), name.end());
      all.insert(all.end(), bytes.begin(), bytes.end());
    }
    outputs.push_back(std::move(all));
  }
  REQUIRE(outputs[0].size() > 300000);
  REQUIRE(outputs[1] == outputs[0]);
  REQUIRE(outputs[2] == outputs[0]);
  const json m = manifest(dir / "out1");
  REQUIRE(m["documents"] == 70002);
  REQUIRE(m["train"]["shards"].size() >= 2);
  fs::remove_all(dir);
}

TEST_CASE("prepare: bad input stops the run, or is counted and skipped", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_errors");
  std::string good;
  for (int i = 0; i < 50; ++i) good += "{\"text\": \"a good line with some words " + std::to_string(i) + "\"}\n";
  write(dir / "good.jsonl", good);
  write(dir / "bad.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"unterminated\n{\"title\": \"no text\"}\n[1, 2]\n");
  const auto out = dir / "out";

  SECTION("stop: the error names file and line; nothing is left behind") {
    auto o = options({(dir / "good.jsonl").string(), (dir / "bad.jsonl").string()}, out);
    o.shard_tokens = 50;  // shards are written before the bad line is reached
    require_error([&] { prepare_shards(o); },
                  {(dir / "bad.jsonl").string() + ":2: invalid JSON", "--on-error skip", "removed the"});
    REQUIRE(files_in(out).empty());
  }
  SECTION("stop: a missing text field") {
    write(dir / "notext.jsonl", "{\"text\": \"fine\"}\n{\"title\": \"no text\"}\n");
    auto o = options({(dir / "notext.jsonl").string()}, out);
    require_error([&] { prepare_shards(o); }, {(dir / "notext.jsonl").string() + ":2: no \"text\" string field"});
    REQUIRE(files_in(out).empty());
  }
  SECTION("stop: an unreadable file") {
    const std::string locked = unreadable_file(dir);
    auto o = options({(dir / "good.jsonl").string(), locked}, out);
    require_error([&] { prepare_shards(o); }, {locked + ": cannot read"});
    REQUIRE(files_in(out).empty());
  }
  SECTION("skip: bad lines and files are counted; the rest is written") {
    const std::string locked = unreadable_file(dir);
    auto o = options({(dir / "bad.jsonl").string(), locked, (dir / "good.jsonl").string()}, out);
    o.skip_errors = true;
    const PrepareSummary s = prepare_shards(o);
    REQUIRE(s.skipped_documents == 3);  // unterminated string, no "text", an array
    REQUIRE(s.skipped_files == 1);
    REQUIRE(s.train.documents == 51);
    const json m = manifest(out);
    REQUIRE(m["skipped"]["documents"] == 3);
    REQUIRE(m["skipped"]["files"] == 1);
    REQUIRE(m["skipped"]["errors"].size() == 4);
    REQUIRE(m["skipped"]["errors"][0].get<std::string>().find("bad.jsonl:2") != std::string::npos);
    REQUIRE(m["inputs"][0]["skipped"] == 3);
    REQUIRE(read_split(out, "train").size() == s.train.tokens);
  }
  SECTION("a missing INPUT is always an error") {
    auto o = options({(dir / "nope.txt").string()}, out);
    o.skip_errors = true;
    require_error([&] { prepare_shards(o); }, {"nope.txt", "no such file"});
  }
  for (const auto& name : files_in(out)) REQUIRE(name.find(".tmp") == std::string::npos);
  fs::permissions(dir, fs::perms::owner_all);
  if (fs::exists(dir / "locked.txt")) fs::permissions(dir / "locked.txt", fs::perms::owner_all);
  fs::remove_all(dir);
}

TEST_CASE("prepare: an existing data set is kept unless --overwrite", "[prepare]") {
  if (!Tokenizer::encoder_available()) return;
  const auto dir = test::scratch_dir("prepare_overwrite");
  write(dir / "long.txt", std::string(3000, 'a') + " " + std::string(3000, 'b'));
  write(dir / "short.txt", "short");
  auto o = options({(dir / "long.txt").string()}, dir / "out");
  o.shard_tokens = 100;
  prepare_shards(o);
  const size_t before = glob_files((dir / "out/train_*.bin").string()).size();
  REQUIRE(before > 2);
  write(dir / "out/train_000000.bin.tmp", "left by a killed run");

  o.inputs = {(dir / "short.txt").string()};
  require_error([&] { prepare_shards(o); }, {"already holds a data set", "--overwrite"});
  REQUIRE(glob_files((dir / "out/train_*.bin").string()).size() == before);

  o.overwrite = true;
  prepare_shards(o);
  REQUIRE(files_in(dir / "out") == std::vector<std::string>{"manifest.json", "train_000000.bin"});
  REQUIRE(read_split(dir / "out", "train") == expected_stream({"short"}));

  o.dry_run = true;  // counts, writes nothing
  o.inputs = {(dir / "long.txt").string()};
  const PrepareSummary s = prepare_shards(o);
  REQUIRE(s.train.shards.size() == before);
  REQUIRE(files_in(dir / "out") == std::vector<std::string>{"manifest.json", "train_000000.bin"});
  fs::remove_all(dir);
}

TEST_CASE("prepare: a build without PCRE2 says it cannot encode", "[prepare]") {
  if (Tokenizer::encoder_available()) return;  // the usual build; the other tests cover it
  const auto dir = test::scratch_dir("prepare_no_encoder");
  write(dir / "a.txt", "text");
  require_error([&] { prepare_shards(options({(dir / "a.txt").string()}, dir / "out")); }, {"PCRE2"});
  REQUIRE(!fs::exists(dir / "out"));
  fs::remove_all(dir);
}

TEST_CASE("prepare: options are validated with the flag named", "[prepare]") {
  PrepareOptions o;
  require_error([&] { prepare_shards(o); }, {"no INPUT"});
  o.inputs = {"x.txt"};
  require_error([&] { prepare_shards(o); }, {"--out DIR is required"});
  o.out_dir = "unused";
  o.val_fraction = 1.0;
  require_error([&] { prepare_shards(o); }, {"--val-fraction 1"});
  o.val_fraction = 0;
  o.shard_tokens = 0;
  require_error([&] { prepare_shards(o); }, {"--shard-tokens 0"});
  o.shard_tokens = 1ull << 31;
  require_error([&] { prepare_shards(o); }, {"--shard-tokens"});
  o.shard_tokens = 10;
  o.threads = -2;
  require_error([&] { prepare_shards(o); }, {"--threads -2"});
}
