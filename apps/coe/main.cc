// coe: cascades of ensembles. A thin command over the coe library (start reading at
// include/coe/planner.h and include/coe/rules.h).
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "base/words.h"
#include "commands.h"

namespace {

CLI::App* Find(CLI::App& app, const std::string& name) {
  for (CLI::App* sub : app.get_subcommands({}))
    if (sub->get_name() == name) return sub;
  return nullptr;
}

// Unknown commands and flags get a message naming them and the closest known one
// (CLI11 alone says "A subcommand is required" or lists extra arguments). Returns
// the exit code, or -1 to go on.
int CheckWords(CLI::App& app, int argc, char** argv) {
  std::vector<std::string> commands;
  for (const CLI::App* sub : app.get_subcommands({})) commands.push_back(sub->get_name());
  if (argc < 2) return -1;
  const std::string first = argv[1];
  if (first == "help") {
    CLI::App* sub = argc > 2 ? Find(app, argv[2]) : nullptr;
    std::printf("%s", (sub ? sub->help() : app.help()).c_str());
    return 0;
  }
  if (first.empty() || first[0] == '-') return -1;
  CLI::App* sub = Find(app, first);
  if (!sub) {
    const std::string near = coe::ClosestWord(first, commands);
    std::string all;
    for (const std::string& c : commands) all += (all.empty() ? "" : ", ") + c;
    std::fprintf(stderr, "coe: unknown command '%s'%s (commands: %s; coe help COMMAND for its flags)\n", first.c_str(),
                 near.empty() ? "" : ("; did you mean '" + near + "'?").c_str(), all.c_str());
    return 2;
  }
  std::vector<std::string> flags = {"help"};
  for (const CLI::Option* o : sub->get_options())
    for (const std::string& n : o->get_lnames()) flags.push_back(n);
  for (int i = 2; i < argc; ++i) {
    std::string word = argv[i];
    if (word == "--") break;
    if (word.size() < 3 || word.rfind("--", 0) != 0) continue;
    word = word.substr(2, word.find('=') == std::string::npos ? std::string::npos : word.find('=') - 2);
    if (std::find(flags.begin(), flags.end(), word) != flags.end()) continue;
    const std::string near = coe::ClosestWord(word, flags);
    std::fprintf(stderr, "coe %s: unknown flag --%s%s (coe help %s lists them)\n", first.c_str(), word.c_str(),
                 near.empty() ? "" : ("; did you mean --" + near + "?").c_str(), first.c_str());
    return 2;
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  // Buffers of 1 MiB or more get their own mappings, returned to the system when freed
  // (glibc otherwise raises this threshold as large blocks are freed and keeps them in
  // its heap): peak memory then follows the data alive, not the data once alive.
  mallopt(M_MMAP_THRESHOLD, 1 << 20);
  CLI::App app{"coe: cascades of ensembles — cheap models vote, hard inputs go to bigger ones", "coe"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "coe 0.1.0");
  coe::app::AddPlanCommands(app);
  coe::app::AddLiveCommands(app);
  coe::app::AddServeCommands(app);
  if (int code = CheckWords(app, argc, argv); code >= 0) return code;
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
