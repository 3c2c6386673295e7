// muongpt eval: validation loss of a checkpoint on a token data set.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands/commands.h"
#include "data/loader.h"
#include "train/model_io.h"
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
    const int T = cfg.batch.seq_len, B = cfg.batch.micro_batch;
    if (tokens < T) fail("--tokens ", tokens, ": need at least one sequence of ", T, " tokens");
    ValSet val(pattern, o->data.empty() ? "data.val_pattern" : "--data", tokens - tokens % T, T, cfg.model.vocab_size);
    std::vector<int32_t> inputs, targets, doc_ids;
    double sum = 0;
    for (int i = 0; i < val.num_sequences(); i += B) {
      const int n = std::min(B, val.num_sequences() - i);
      val.sequences(i, n, inputs, targets);
      doc_ids.resize(inputs.size());
      document_ids(inputs.data(), n, T, doc_ids.data());
      sum += lm.model->forward(inputs.data(), targets.data(), n, T, doc_ids.data()) * n * T;
    }
    const double loss = sum / (static_cast<double>(val.num_sequences()) * T);
    std::printf("checkpoint %s (step %d): val loss %.6f on %lld tokens of %s\n", o->checkpoint.c_str(), lm.step, loss,
                static_cast<long long>(val.num_sequences()) * T, pattern.c_str());
    const nlohmann::json result = {{"checkpoint", o->checkpoint}, {"step", lm.step}, {"val_loss", loss},
                                   {"tokens", static_cast<long long>(val.num_sequences()) * T}, {"data", pattern}};
    std::printf("%s\n", result.dump().c_str());
  });
}

}  // namespace muongpt
