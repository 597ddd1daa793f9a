// The module registry (src/backends/registry.h, module.h): backend kinds and their
// traits, known without loading a module; modules loaded by name, each exporting the
// ABI version and its own name; errors naming what is missing.
#include <gtest/gtest.h>

#include "backends/registry.h"
#include "coe/backend.h"
#include "coe/catalogue.h"
#include "testing.h"

namespace coe {
namespace {

ModelSpec Spec(const std::string& backend, const std::string& path = "", const std::string& url = "") {
  ModelSpec s;
  s.name = "m";
  s.backend = backend;
  s.path = path;
  s.url = url;
  return s;
}

TEST(Modules, KindsAreNamedOrImpliedAndTheirTraitsNeedNoModule) {
  EXPECT_EQ(BackendKindOf(Spec("", "", "http://127.0.0.1:1")), "remote");
  EXPECT_EQ(BackendKindOf(Spec("", "zoo/m.onnx")), "onnx");
  EXPECT_EQ(BackendKindOf(Spec("", "rec.csv")), "recorded");
  EXPECT_EQ(BackendKindOf(Spec("onednn", "zoo/m.onnx")), "onednn");
  EXPECT_EQ(BackendKindOf(Spec("", ".onnx")), "");
  const BackendTraits chat = BackendTraitsOf(Spec("openai"));
  EXPECT_TRUE(chat.text_inputs && chat.waits && chat.measures_cost && !chat.computes);
  const BackendTraits remote = BackendTraitsOf(Spec("", "", "http://127.0.0.1:1"));
  EXPECT_TRUE(!remote.text_inputs && remote.waits && !remote.measures_cost && !remote.computes);
  for (const char* local : {"onnx", "onednn"}) {
    const BackendTraits t = BackendTraitsOf(Spec(local));
    EXPECT_TRUE(!t.text_inputs && !t.waits && !t.measures_cost && t.computes) << local;
  }
  const BackendTraits recorded = BackendTraitsOf(Spec("recorded"));
  EXPECT_TRUE(!recorded.text_inputs && !recorded.waits && !recorded.measures_cost && !recorded.computes);
  const BackendTraits unknown = BackendTraitsOf(Spec("tflite"));
  EXPECT_TRUE(!unknown.text_inputs && !unknown.waits && !unknown.measures_cost && !unknown.computes);
  EXPECT_EQ(FindBackendKind("tflite"), nullptr);
}

TEST(Modules, UnknownKindsAndModulesAreErrorsNamingWhatIsKnown) {
  auto unknown = CreateBackend(Spec("tflite"), BackendOptions{});
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().ToString(),
            "invalid argument: model 'm': unknown backend 'tflite' (expected onnx, onednn, recorded, remote, openai)");
  auto none = CreateBackend(Spec(""), BackendOptions{});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("says neither backend, path nor url"), std::string::npos);
  auto module = LoadModule("tflite");
  ASSERT_FALSE(module.ok());
  EXPECT_EQ(module.status().message(), "no module 'tflite'");
}

// Every module this build made loads by name and says which it is; one it did not make
// is FailedPrecondition naming its CMake option.
TEST(Modules, EachModuleExportsItsNameAndTheAbiVersion) {
  int loaded = 0;
  for (const char* name : {"opencv", "images", "onednn", "remote", "grpc"}) {
    auto m = LoadModule(name);
    if (!m.ok()) {
      EXPECT_EQ(m.status().code(), StatusCode::kFailedPrecondition) << name;
      EXPECT_NE(m.status().message().find("this coe was built without"), std::string::npos) << m.status().ToString();
      continue;
    }
    ++loaded;
    EXPECT_EQ((*m)->abi_version, kModuleAbiVersion) << name;
    EXPECT_STREQ((*m)->name, name);
    EXPECT_EQ(LoadModule(name).value(), *m) << name << ": loaded once";
  }
  EXPECT_GT(loaded, 0);
  auto image_loader = LoadModule("images");
  if (image_loader.ok()) {
    EXPECT_NE((*image_loader)->load_images, nullptr);
  }
  auto remote = LoadModule("remote");
  if (remote.ok()) {
    ASSERT_EQ((*remote)->num_backends, 2);
    EXPECT_STREQ((*remote)->backends[0].kind, "remote");
    EXPECT_STREQ((*remote)->backends[1].kind, "openai");
  }
  auto grpc = LoadModuleService("grpc", "grpc");
  if (grpc.ok()) {
    EXPECT_NE(*grpc, nullptr);
  }
  auto other = LoadModuleService(remote.ok() ? "remote" : "grpc", "nothing");
  EXPECT_FALSE(other.ok());
}

// A chat model (not in the conformance suite, which runs tensors): its info is its
// kind's traits. Making one needs no network.
TEST(Modules, AChatModelsInfoIsItsKindsTraits) {
  auto cat = ParseCatalogue(
      "[models.chat]\nbackend = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\nmodel = \"x\"\n"
      "prompt = \"{question}\"\nlabels = [\"A\", \"B\"]\n",
      "chat.toml", "");
  ASSERT_TRUE(cat.ok()) << cat.status().ToString();
  auto b = CreateBackend(*cat->Find("chat"), BackendOptions{});
  if (!b.ok() && b.status().message().find("built without") != std::string::npos) GTEST_SKIP() << "no remote module";
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  const BackendInfo& info = (*b)->info();
  const BackendTraits t = BackendTraitsOf(*cat->Find("chat"));
  EXPECT_EQ(info.kind, "openai");
  EXPECT_EQ(t.text_inputs, info.text_inputs);
  EXPECT_EQ(t.waits, info.waits);
  EXPECT_EQ(t.measures_cost, !info.cost_unit.empty());
}

}  // namespace
}  // namespace coe
