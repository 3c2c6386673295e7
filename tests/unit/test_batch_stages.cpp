// Batch-size schedules (batch.stages, record #46) in the trainer: each step
// trains on its stage's batch, the loss is the mean over that batch, the
// token count and the checkpoint follow the stages, and a run resumed inside
// the schedule continues with the same batches.
#include "config/config_io.h"
#include "dist/comm.h"
#include "optim/schedule.h"
#include "test_support.h"
#include "train/trainer.h"

using namespace muongpt;
using namespace muongpt::test;

namespace {

// configs/tiny.json (micro_batch 8) with 4 steps, the last an extension step:
// steps 0, 1 train 512 tokens in sequences of 32, step 2 1,024 in sequences of
// 64, step 3 (the extension) the batch itself, 2,048 in sequences of 128.
Config staged_config(std::vector<std::string> more = {}) {
  std::vector<std::string> overrides = {
      "train.steps=4", "schedule.extension_steps=1", "batch.global_tokens=2048", "batch.seq_len=128",
      "batch.stages=[{\"global_tokens\": 512, \"seq_len\": 32}, {\"global_tokens\": 1024, \"seq_len\": 64}]",
      "data.val_tokens=1024"};
  overrides.insert(overrides.end(), more.begin(), more.end());
  Config cfg = load_config(source_path("configs/tiny.json"), overrides);
  validate_config(cfg, "staged", 1);
  return cfg;
}

}  // namespace

TEST_CASE("the trainer trains each step on its batch stage", "[train][batch]") {
  const Config staged = staged_config();
  auto comm = make_single_comm();
  Trainer trainer(staged, "staged", *comm, "cpu");
  const long long want_tokens[] = {512, 512, 1024, 2048};
  std::vector<StepStats> stats;
  for (int step = 0; step < 4; ++step) {
    INFO("step " << step);
    stats.push_back(trainer.train_step());
    REQUIRE(stats.back().tokens == want_tokens[step]);
    REQUIRE(std::isfinite(stats.back().train_loss));
  }
  REQUIRE(trainer.tokens_seen() == 512 + 512 + 1024 + 2048);

  // The first stage's steps are those of a run whose batch is that stage's
  // (same data, same lr schedule): the stage's batch and the mean over it.
  Config first_stage = staged_config({"batch.global_tokens=512", "batch.seq_len=32", "batch.stages=[]"});
  Trainer fixed(first_stage, "first stage", *comm, "cpu");
  REQUIRE(fixed.train_step().train_loss == stats[0].train_loss);
  REQUIRE(fixed.train_step().train_loss == stats[1].train_loss);
  // and step 2 differs from a run that stays in the first stage (the stage change matters)
  REQUIRE(fixed.train_step().train_loss != stats[2].train_loss);
}

TEST_CASE("a run with batch stages resumes inside the schedule with the same batches", "[train][batch][checkpoint]") {
  const Config staged = staged_config();
  auto comm = make_single_comm();
  const auto dir = scratch_dir("batch_stages_resume");
  Trainer straight(staged, "staged", *comm, "cpu");
  std::vector<double> losses;
  std::string checkpoint;
  for (int step = 0; step < 4; ++step) {
    losses.push_back(straight.train_step().train_loss);
    if (step == 1) checkpoint = straight.save_checkpoint(dir.string());  // after the first stage
  }
  Trainer resumed(staged, "staged", *comm, "cpu");
  resumed.load_checkpoint(checkpoint);
  REQUIRE(resumed.step() == 2);
  REQUIRE(resumed.tokens_seen() == 1024);
  const StepStats s2 = resumed.train_step();
  REQUIRE(s2.tokens == 1024);
  REQUIRE(s2.train_loss == losses[2]);
  const StepStats s3 = resumed.train_step();
  REQUIRE(s3.tokens == 2048);
  REQUIRE(s3.train_loss == losses[3]);
}
