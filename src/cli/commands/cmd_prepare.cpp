#include "cli/commands/commands.h"
#include "util/error.h"

namespace muongpt {

void register_prepare(CLI::App& app) {
  auto* cmd = app.add_subcommand("prepare", "prepare (under construction)");
  cmd->callback([] { fail("prepare: not implemented yet"); });
}

}  // namespace muongpt
