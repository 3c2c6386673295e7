// muongpt eval: validation loss of a checkpoint on a token data set.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands/commands.h"
#include "data/loader.h"
#include "optim/schedule.h"
#include "train/model_io.h"
#include "train/trainer.h"
#include "util/error.h"

namespace muongpt {

void register_eval(CLI::App& app) {
  struct Options {
    std::string checkpoint, data;
    long long tokens = 0;
    std::vector<std::string> overrides;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("eval", "validation loss of a checkpoint (last line: a JSON object)");
  cmd->add_option("--checkpoint,-k", o->checkpoint, "checkpoint file (ckpt_NNNNNNNN.bin)")->required()->check(CLI::ExistingFile);
  cmd->add_option("--data", o->data, "glob of token shards (default: the run's data.val_pattern)");
  cmd->add_option("--tokens", o->tokens, "evaluate the first N tokens (default: the run's data.val_tokens)");
  cmd->add_option("--set,-s", o->overrides, "override a field of the stored config");
  cmd->callback([o] {
    LoadedModel lm = load_model(o->checkpoint, o->overrides, 0, 0);
    const Config& cfg = lm.config;
    const std::string pattern = o->data.empty() ? cfg.data.val_pattern : o->data;
    const long long tokens = o->tokens > 0 ? o->tokens : cfg.data.val_tokens;
    if (tokens < 1) fail("--tokens ", tokens, ": need at least one token");
    ValSet val(pattern, o->data.empty() ? "data.val_pattern" : "--data", tokens, cfg.val_seq_len(),
               cfg.model.vocab_size);
    const auto windows = attention_windows_at(cfg.model, cfg.schedule, lm.step, cfg.train.steps);
    const double sum = val.loss_sum(0, val.num_sequences(), cfg.batch.micro_batch, val_chunking(cfg, windows),
                                    [&](const int32_t* inputs, const int32_t* targets, const int32_t* doc_ids, int n,
                                        int len, std::vector<float>& losses) {
                                      lm.model->forward(inputs, targets, n, len, doc_ids);
                                      losses.assign(lm.model->losses(), lm.model->losses() + n * len);
                                    });
    const double loss = sum / static_cast<double>(val.num_tokens());
    std::printf("checkpoint %s (step %d): val loss %.6f on %lld tokens of %s\n", o->checkpoint.c_str(), lm.step, loss,
                static_cast<long long>(val.num_tokens()), pattern.c_str());
    const nlohmann::json result = {{"checkpoint", o->checkpoint}, {"step", lm.step}, {"val_loss", loss},
                                   {"tokens", static_cast<long long>(val.num_tokens())}, {"data", pattern}};
    std::printf("%s\n", result.dump().c_str());
  });
}

}  // namespace muongpt
