// muongpt: train GPT models with Muon + AdamW.
//
//   muongpt train   --config configs/tiny.json [--set key=value ...] [--out DIR] [--resume]
//   muongpt eval    --checkpoint runs/x/ckpt_000200.bin [--data GLOB]
//   muongpt sample  --checkpoint runs/x/ckpt_000200.bin [--prompt TEXT]
//   muongpt info    --config configs/tiny.json | --data GLOB | --config-reference
//   muongpt prepare INPUT... --out DIR
//   muongpt bench   --config configs/tiny.json
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands/commands.h"
#include "util/error.h"

int main(int argc, char** argv) {
  CLI::App app{"muongpt " MUONGPT_VERSION ": train GPT language models with Muon + AdamW"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "muongpt " MUONGPT_VERSION);
  muongpt::register_train(app);
  muongpt::register_eval(app);
  muongpt::register_sample(app);
  muongpt::register_info(app);
  muongpt::register_prepare(app);
  muongpt::register_bench(app);
  if (argc > 1 && argv[1][0] != '-') {  // CLI11 would only say "A subcommand is required"
    bool known = false;
    std::string names;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known |= sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "error: unknown command '%s' (commands: %s; see muongpt --help)\n", argv[1], names.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const muongpt::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
