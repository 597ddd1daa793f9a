// The `coe` subcommands. Each Add*Commands registers its subcommands; a subcommand's
// callback throws CLI::RuntimeError(exit_code) so that main() returns that code.
#ifndef COE_APPS_COMMANDS_H_
#define COE_APPS_COMMANDS_H_

#include <CLI/CLI.hpp>

namespace coe::app {
void AddPlanCommands(CLI::App& app);
void AddLiveCommands(CLI::App& app);
void AddServeCommands(CLI::App& app);  // coe serve (cmd_serve.cc)
}  // namespace coe::app

#endif  // COE_APPS_COMMANDS_H_
