// muongpt sample: generate tokens from a checkpoint.
//
// Each new token is drawn from softmax(softcap(logits) / temperature) over the
// real vocabulary (padded ids are never drawn), optionally restricted to the
// top k. The context is the last seq_len tokens. Seeded: same seed, same text.
// The prompt is text (--prompt, encoded with the GPT-2 tokenizer) or token ids
// (--prompt-ids); the output is the decoded text, and with --ids the ids too.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "cli/commands/commands.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "train/model_io.h"
#include "util/error.h"
#include "util/rng.h"

namespace muongpt {

namespace {

std::vector<int32_t> parse_ids(const std::string& text, int vocab) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0 || v >= vocab)
      fail("--prompt-ids: \"", item, "\" is not a token id in [0, ", vocab, ")");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

int32_t draw(const float* logits, int vocab, double softcap, double temperature, int top_k, Rng& rng) {
  std::vector<double> z(vocab);
  for (int j = 0; j < vocab; ++j) z[j] = softcap > 0 ? softcap * std::tanh(logits[j] / softcap) : logits[j];
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  if (temperature <= 0) return *std::max_element(order.begin(), order.end(), [&](int a, int b) { return z[a] < z[b]; });
  int k = top_k > 0 ? std::min(top_k, vocab) : vocab;
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int a, int b) { return z[a] > z[b]; });
  const double m = z[order[0]];
  std::vector<double> p(k);
  double sum = 0;
  for (int i = 0; i < k; ++i) sum += p[i] = std::exp((z[order[i]] - m) / temperature);
  double u = rng.uniform() * sum;
  for (int i = 0; i < k; ++i) {
    u -= p[i];
    if (u <= 0) return order[i];
  }
  return order[k - 1];
}

}  // namespace

void register_sample(CLI::App& app) {
  struct Options {
    std::string checkpoint, prompt, prompt_ids;
    std::string tokenizer_dir = default_tokenizer_dir();
    bool print_ids = false;
    int tokens = 64, top_k = 0;
    double temperature = 1.0;
    unsigned long long seed = 1337;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("sample", "generate tokens from a checkpoint");
  cmd->add_option("--checkpoint,-k", o->checkpoint, "checkpoint file")->required()->check(CLI::ExistingFile);
  auto* text_opt = cmd->add_option("--prompt,-p", o->prompt, "prompt text (default: <|endoftext|>, a fresh document)");
  cmd->add_option("--prompt-ids", o->prompt_ids, "comma-separated prompt token ids instead of text")
      ->excludes(text_opt);
  cmd->add_option("--tokenizer", o->tokenizer_dir, "folder with encoder.json and vocab.bpe")
      ->capture_default_str();
  cmd->add_flag("--ids", o->print_ids, "also print the prompt and generated token ids");
  cmd->add_option("--tokens,-n", o->tokens, "tokens to generate")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature,-t", o->temperature, "softmax temperature; 0 = greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", o->top_k, "sample among the k most likely tokens; 0 = all")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", o->seed, "random seed");
  cmd->callback([o] {
    LoadedModel lm = load_model(o->checkpoint, {}, 1, 0);
    const ModelConfig& m = lm.config.model;
    const int window = lm.model->max_seq_len();
    const Tokenizer tok = Tokenizer::load(o->tokenizer_dir);
    if (tok.vocab_size() != m.vocab_size)
      fail("--tokenizer ", o->tokenizer_dir, ": ", tok.vocab_size(), " tokens, but the checkpoint's model has ",
           m.vocab_size);
    std::vector<int32_t> ids;
    if (!o->prompt_ids.empty()) {
      ids = parse_ids(o->prompt_ids, m.vocab_size);
    } else {
      ids.push_back(tok.eot_token());  // every training document starts with <|endoftext|>
      if (!o->prompt.empty()) {
        if (!Tokenizer::encoder_available())
          fail("--prompt: this build has no tokenizer encoder (PCRE2 was not found); use --prompt-ids");
        for (int id : tok.encode(o->prompt)) ids.push_back(id);
      }
    }
    if (ids.empty()) fail("--prompt-ids: empty prompt");
    Rng rng(o->seed);
    const size_t prompt_len = ids.size();
    std::vector<int32_t> doc_ids;
    for (int i = 0; i < o->tokens; ++i) {
      const int n = std::min<int>(window, static_cast<int>(ids.size()));
      doc_ids.resize(n);
      document_ids(ids.data() + ids.size() - n, 1, n, doc_ids.data());
      lm.model->forward(ids.data() + ids.size() - n, nullptr, 1, n, doc_ids.data());
      const float* last = lm.model->logits() + static_cast<size_t>(n - 1) * m.padded_vocab_size;
      ids.push_back(draw(last, m.vocab_size, m.logit_softcap, o->temperature, o->top_k, rng));
    }
    if (o->print_ids) {
      std::printf("prompt ids:");
      for (size_t i = 0; i < prompt_len; ++i) std::printf(" %d", ids[i]);
      std::printf("\ngenerated ids:");
      for (size_t i = prompt_len; i < ids.size(); ++i) std::printf(" %d", ids[i]);
      std::printf("\n");
    }
    // The <|endoftext|> added in front of a text prompt is not part of the text.
    const long shown_from = o->prompt_ids.empty() ? 1 : 0;
    const std::vector<int> prompt_ids(ids.begin() + shown_from, ids.begin() + static_cast<long>(prompt_len));
    const std::vector<int> generated(ids.begin() + static_cast<long>(prompt_len), ids.end());
    std::printf("%s%s\n", tok.decode(prompt_ids).c_str(), tok.decode(generated).c_str());
  });
}

}  // namespace muongpt
