// Memory of `coe plan` on large recordings: 1,000,000 rows x 5 models with scores
// (written as `coe record` writes them, 9 significant digits) must peak at no more
// than twice the CSV's size. Release lane only (ctest label "memory"): sanitizers
// change memory use.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <string>

#include "testing.h"

namespace coe {
namespace {

namespace fs = std::filesystem;

TEST(Memory, PlanPeaksBelowTwiceTheCsvSize) {
  const fs::path dir = fs::temp_directory_path() / ("coe_memory_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string csv = (dir / "big.csv").string(), cat = (dir / "big.toml").string();
  {
    std::FILE* f = std::fopen(csv.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fprintf(f, "id,label,m0,m1,m2,m3,m4,m0|score,m1|score,m2|score,m3|score,m4|score\n");
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> u(0, 1);
    const double acc[5] = {0.6, 0.7, 0.8, 0.85, 0.9};
    for (int i = 0; i < 1000000; ++i) {
      const int t = static_cast<int>(rng() % 10);
      std::fprintf(f, "q%d,%d", i, t);
      for (double a : acc) std::fprintf(f, ",%d", u(rng) < a ? t : static_cast<int>(rng() % 10));
      for (int k = 0; k < 5; ++k) std::fprintf(f, ",%.9g", u(rng));
      std::fprintf(f, "\n");
    }
    std::fclose(f);
    f = std::fopen(cat.c_str(), "w");
    std::fprintf(f,
                 "[models.m0]\nusd = 1\n[models.m1]\nusd = 2\n[models.m2]\nusd = 4\n[models.m3]\nusd = 8\n"
                 "[models.m4]\nusd = 16\n");
    std::fclose(f);
  }
  const double file_mib = fs::file_size(csv) / 1048576.0;
  testing::Proc p = testing::RunCoe("plan --calib " + csv + " --models " + cat + " --json", /*with_stderr=*/false);
  ASSERT_EQ(p.code, 0) << p.out.substr(0, 2000);
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  const double peak_mib = ru.ru_maxrss / 1024.0;
  std::printf("coe plan: %.1f MiB CSV, peak RSS %.1f MiB (%.2fx)\n", file_mib, peak_mib, peak_mib / file_mib);
  EXPECT_LE(peak_mib, 2 * file_mib);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace coe
