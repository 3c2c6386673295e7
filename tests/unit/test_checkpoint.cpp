// Checkpoint files: round trip, atomicity, and rejection of damaged files.
#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "train/checkpoint.h"

using namespace muongpt;
using namespace muongpt::test;

TEST_CASE("checkpoint round trip", "[checkpoint]") {
  const auto dir = scratch_dir("ckpt");
  const std::string path = (dir / checkpoint_name(42)).string();
  REQUIRE(checkpoint_name(42) == "ckpt_00000042.bin");
  const auto a = random_vector<float>(1000, 1), b = random_vector<float>(7, 2);
  save_checkpoint(path, {{"step", 42}, {"note", "hello"}}, {{"a", a.data(), a.size()}, {"b", b.data(), b.size()}});
  REQUIRE(!std::filesystem::exists(path + ".tmp"));
  Checkpoint c(path);
  REQUIRE(c.header()["step"] == 42);
  REQUIRE(c.header()["note"] == "hello");
  std::vector<float> a2(1000), b2(7);
  c.read("a", a2.data(), a2.size());
  c.read("b", b2.data(), b2.size());
  REQUIRE(a2 == a);
  REQUIRE(b2 == b);
  require_error([&] { c.read("a", a2.data(), 999); }, {path, "tensor a has 1000 elements", "expects 999"});
  require_error([&] { c.read("zzz", a2.data(), 1); }, {path, "no tensor zzz"});
  save_checkpoint((dir / checkpoint_name(7)).string(), {{"step", 7}}, {});
  const auto list = list_checkpoints(dir.string());
  REQUIRE(list.size() == 2);
  REQUIRE(list[0] == path);  // newest first
}

TEST_CASE("truncated, corrupted and foreign checkpoints are rejected", "[checkpoint]") {
  const auto dir = scratch_dir("ckpt_bad");
  const std::string path = (dir / "c.bin").string();
  const auto a = random_vector<float>(5000, 1);
  save_checkpoint(path, {{"step", 1}}, {{"a", a.data(), a.size()}});
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes(std::istreambuf_iterator<char>(in), {});
  auto write = [&](const std::string& name, const std::vector<char>& b) {
    const std::string p = (dir / name).string();
    std::ofstream(p, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    return p;
  };
  auto truncated = bytes;
  truncated.resize(bytes.size() / 2);
  require_error([&] { Checkpoint(write("t.bin", truncated)); }, {"t.bin", "truncated"});
  auto flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x40;
  require_error([&] { Checkpoint(write("f.bin", flipped)); }, {"f.bin", "checksum mismatch"});
  require_error([&] { Checkpoint(write("x.bin", std::vector<char>(100, 'x'))); }, {"x.bin", "not a muongpt checkpoint"});
}
