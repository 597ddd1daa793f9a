// coe: cascades of ensembles. A thin command over the coe library (start reading at
// include/coe/planner.h and include/coe/rules.h).
#include <malloc.h>

#include <CLI/CLI.hpp>

#include "commands.h"

int main(int argc, char** argv) {
  // Buffers of 1 MiB or more get their own mappings, returned to the system when freed
  // (glibc otherwise raises this threshold as large blocks are freed and keeps them in
  // its heap): peak memory then follows the data alive, not the data once alive.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  CLI::App app{"coe: cascades of ensembles — cheap models vote, hard inputs go to bigger ones"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "coe 0.1.0");
  coe::app::AddPlanCommands(app);
  coe::app::AddLiveCommands(app);
  coe::app::AddServeCommands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::RuntimeError& e) {
    return e.get_exit_code();
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;  // bad flags are bad input
  }
  return 0;
}
