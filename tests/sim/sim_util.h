// Helpers shared by the simulation scenarios: seeds, sweep mode, figures and percentiles.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/clock.h"
#include "tests/sim/sim.h"

namespace edgekv::sim {

// EDGEKV_SIM_SWEEP=1 (make sim) runs more seeds and sizes.
inline bool sweep_mode() {
  const char* env = std::getenv("EDGEKV_SIM_SWEEP");
  return env != nullptr && *env != '\0' && *env != '0';
}

inline double seconds(MonoTime::duration d) { return std::chrono::duration<double>(d).count(); }

// Prints one figure a scenario measured, one line each, easy to quote and to grep.
inline void figure(const std::string& name, double value, const char* unit) {
  std::printf("[figure] %s = %.3f %s\n", name.c_str(), value, unit);
  std::fflush(stdout);
}

// The q-quantile (0..1) of `values`, nearest rank.
inline double quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(q * static_cast<double>(values.size()) + 0.999999);
  rank = std::clamp<size_t>(rank, 1, values.size());
  return values[rank - 1];
}

// A fixture that names the seed of a failing scenario, for EDGEKV_SIM_SEED to replay it.
class SimTest : public ::testing::Test {
 protected:
  uint64_t seed(uint64_t fallback) {
    seed_ = seed_from_env(fallback);
    return seed_;
  }
  void TearDown() override {
    if (HasFailure()) {
      std::printf("replay: EDGEKV_SIM_SEED=%llu (seed of the last trial run)\n",
                  static_cast<unsigned long long>(seed_));
    }
  }
  uint64_t seed_ = 0;
};

}  // namespace edgekv::sim
