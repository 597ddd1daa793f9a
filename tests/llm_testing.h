// Shared by the chat-model tests (llm_test.cc, streaming_test.cc): the RouterBench
// recordings the replay server (testing/openai_replay.h) answers from, and the names
// the tests' catalogues give four of its models.
#ifndef COE_TESTS_LLM_TESTING_H_
#define COE_TESTS_LLM_TESTING_H_

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>

#include "coe/cascade_spec.h"
#include "coe/catalogue.h"
#include "coe/server.h"
#include "testing.h"

namespace coe::testing {

// The ARC-Challenge test split: $COE_SHARED_DATA/routerbench/, else the shared data
// beside the source tree.
inline std::string SharedArc() { return SharedDataDir() + "/routerbench/arc_challenge_test.csv"; }

// Catalogue name -> the model's name in the recordings.
inline const std::map<std::string, std::string> kModels = {
    {"mistral", "mistralai/mistral-7b-chat"},
    {"mixtral", "mistralai/mixtral-8x7b-chat"},
    {"llama70", "meta/llama-2-70b-chat"},
    {"gpt4", "gpt-4-1106-preview"},
};

// A fresh directory for the running test: <tmp>/<prefix>_<pid>_<test name>.
inline std::filesystem::path TestDir(const std::string& prefix) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()) + "_" +
                                                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::create_directories(dir);
  return dir;
}

// A catalogue of kModels as chat members of the replay server on `port` at $1 per
// million tokens in and out: `prompt` (TOML-escaped), answers read as a letter.
inline std::string ReplayCatalogue(int port, const std::string& prompt, int timeout_ms, int retries) {
  std::ostringstream c;
  c << "[defaults]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:" << port << "/v1\"\n"
    << "prompt = \"" << prompt << "\"\nanswer = \"choice\"\n"
    << "usd_per_mtok_in = 1.0\nusd_per_mtok_out = 1.0\ntimeout_ms = " << timeout_ms << "\nretries = " << retries
    << "\nmax_concurrency = 8\n";
  for (const auto& [name, model] : kModels) c << "[models." << name << "]\nmodel = \"" << model << "\"\n";
  return c.str();
}

// The tests' ladder: {mistral, mixtral, llama70} unanimous, then {gpt4}.
inline constexpr const char* kLadderToml =
    "[[tiers]]\nmembers = [\"mistral\", \"mixtral\", \"llama70\"]\nmin_agreement = 1.0\n"
    "[[tiers]]\nmembers = [\"gpt4\"]\n";

// Serves the ladder as "ladder" (and each member by its name) over the replay server
// on `port`, prompted with the chat front door's {input}: writes `dir`/chat.toml and
// `dir`/c.toml, and starts on an ephemeral port.
inline StatusOr<std::unique_ptr<Server>> ServeLadder(const std::filesystem::path& dir, int port, int timeout_ms,
                                                     int retries) {
  std::ofstream(dir / "chat.toml") << ReplayCatalogue(port, "{input}\\nAnswer with one letter.", timeout_ms, retries);
  std::ofstream(dir / "c.toml") << kLadderToml;
  COE_ASSIGN_OR_RETURN(Catalogue cat, ReadCatalogue((dir / "chat.toml").string()));
  COE_ASSIGN_OR_RETURN(CascadeSpec spec, ReadCascade((dir / "c.toml").string()));
  ServerOptions so;
  so.name = "ladder";
  COE_ASSIGN_OR_RETURN(std::unique_ptr<Server> s, Server::Create(spec, cat, EngineOptions{}, so));
  COE_RETURN_IF_ERROR(s->Start("127.0.0.1", 0));
  return s;
}

}  // namespace coe::testing

#endif  // COE_TESTS_LLM_TESTING_H_
