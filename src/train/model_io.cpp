#include "train/model_io.h"

#include "config/config_io.h"
#include "optim/schedule.h"
#include "train/checkpoint.h"
#include "util/error.h"

namespace muongpt {

LoadedModel load_model(const std::string& checkpoint, const std::vector<std::string>& overrides, int max_batch,
                       int max_seq_len) {
  Checkpoint ckpt(checkpoint);
  LoadedModel out;
  nlohmann::json doc = ckpt.header().at("config");
  for (const auto& o : overrides) apply_override(doc, o);
  const std::string source = str("checkpoint ", checkpoint, overrides.empty() ? "" : " (with --set overrides)");
  out.config = config_from_json(doc, source);
  validate_config(out.config, source, 1);
  if (max_seq_len <= 0) max_seq_len = out.config.batch.seq_len;
  if (max_batch <= 0) max_batch = out.config.batch.micro_batch;
  out.model = std::make_unique<Gpt<float>>(out.config.model, max_batch, max_seq_len);
  for (const auto& spec : out.model->table().params())
    ckpt.read(spec.name, out.model->params().data() + spec.offset, spec.numel);
  out.step = ckpt.header().value("step", 0);
  // The windows, scale and RoPE frequencies the run used at this step
  // (schedule.window_warmup / window_stages), so that eval reproduces the
  // run's validation loss.
  out.model->set_attention(
      attention_settings_at(out.config.model, out.config.schedule, out.step, out.config.train.steps));
  return out;
}

}  // namespace muongpt
