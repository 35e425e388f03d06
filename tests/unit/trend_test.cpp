#include "analysis/trend.h"

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include <gtest/gtest.h>

namespace kleak {
namespace {

// 31 samples 2 s apart (a minute), value = f(i).
std::vector<TrendPoint> series(const std::function<double(int)>& f, int n = 31, double step_s = 2) {
  std::vector<TrendPoint> p;
  for (int i = 0; i < n; ++i) p.push_back({i * step_s, f(i)});
  return p;
}

TrendThresholds bytes_thresholds() {
  TrendThresholds th;
  th.min_change = 16384;
  return th;
}

// A leak: 4 KiB per sample on top of 1 GiB.
const auto kLinear = [](int i) { return 1073741824.0 + 4096.0 * i; };
// A cache that fills in the first third, then stays.
const auto kPlateau = [](int i) { return 1e6 + 40960.0 * std::min(i, 10); };
// Churn: up 3 steps of 64 KiB, then everything freed.
const auto kSawtooth = [](int i) { return 1e6 + 65536.0 * (i % 4); };

std::vector<TrendPoint> noise() {
  std::mt19937 rng(42);
  std::uniform_real_distribution<double> d(-200000, 200000);
  return series([&](int) { return 5e7 + d(rng); });
}

TEST(Trend, LinearGrowth) {
  auto p = series(kLinear);
  Trend t = compute_trend(p);
  EXPECT_EQ(t.points, 31u);
  EXPECT_DOUBLE_EQ(t.start, 1073741824.0);
  EXPECT_DOUBLE_EQ(t.end, 1073741824.0 + 4096.0 * 30);
  EXPECT_DOUBLE_EQ(t.delta, 4096.0 * 30);
  EXPECT_DOUBLE_EQ(t.span_s, 60);
  EXPECT_NEAR(t.slope_per_s, 2048.0, 1e-6);
  EXPECT_NEAR(t.recent_slope_per_s, 2048.0, 1e-6);
  EXPECT_NEAR(t.r2, 1.0, 1e-9);
  EXPECT_DOUBLE_EQ(t.nondecreasing_fraction, 1.0);
  EXPECT_DOUBLE_EQ(t.nonincreasing_fraction, 0.0);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::growing);
}

TEST(Trend, LinearShrink) {
  Trend t = compute_trend(series([](int i) { return 1e7 - 8192.0 * i; }));
  EXPECT_NEAR(t.slope_per_s, -4096.0, 1e-6);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::shrinking);
}

TEST(Trend, PlateauIsNotGrowth) {
  Trend t = compute_trend(series(kPlateau));
  EXPECT_GT(t.slope_per_s, 0);
  EXPECT_DOUBLE_EQ(t.nondecreasing_fraction, 1.0);  // never went down...
  EXPECT_NEAR(t.recent_slope_per_s, 0.0, 1e-9);     // ...but stopped going up
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
}

TEST(Trend, SawtoothIsNotGrowth) {
  Trend t = compute_trend(series(kSawtooth));
  EXPECT_LT(t.r2, 0.2);
  EXPECT_LT(t.nondecreasing_fraction, 0.8);
  EXPECT_NE(classify(t, bytes_thresholds()), TrendClass::growing);
}

TEST(Trend, NoiseIsNotGrowth) {
  auto p = noise();
  Trend t = compute_trend(p);
  EXPECT_LT(t.r2, 0.3);
  TrendClass c = classify(t, bytes_thresholds());
  EXPECT_TRUE(c == TrendClass::noisy || c == TrendClass::flat) << to_string(c);
}

TEST(Trend, LeakInsideChurnStillGrows) {
  // 4 KiB per sample kept, plus 4 KiB of churn that comes and goes.
  Trend t = compute_trend(series([](int i) { return 1e6 + 4096.0 * i + (i % 2 ? 4096.0 : 0); }));
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::growing);
}

TEST(Trend, SmallChangeIsFlat) {
  // Steady, but 30 x 100 B is under the 16 KiB threshold.
  Trend t = compute_trend(series([](int i) { return 1e6 + 100.0 * i; }));
  EXPECT_NEAR(t.r2, 1.0, 1e-9);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
  TrendThresholds fine = bytes_thresholds();
  fine.min_change = 1000;
  EXPECT_EQ(classify(t, fine), TrendClass::growing);
}

TEST(Trend, Constant) {
  Trend t = compute_trend(series([](int) { return 12345.0; }));
  EXPECT_DOUBLE_EQ(t.slope_per_s, 0);
  EXPECT_DOUBLE_EQ(t.r2, 0);
  EXPECT_DOUBLE_EQ(t.delta, 0);
  EXPECT_DOUBLE_EQ(t.nondecreasing_fraction, 1);
  EXPECT_DOUBLE_EQ(t.nonincreasing_fraction, 1);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
}

TEST(Trend, SinglePoint) {
  std::vector<TrendPoint> p{{5, 1e9}};
  Trend t = compute_trend(p);
  EXPECT_EQ(t.points, 1u);
  EXPECT_DOUBLE_EQ(t.start, 1e9);
  EXPECT_DOUBLE_EQ(t.end, 1e9);
  EXPECT_DOUBLE_EQ(t.slope_per_s, 0);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
}

TEST(Trend, TwoPointsAreNotEnough) {
  std::vector<TrendPoint> p{{0, 0}, {2, 1e9}};
  Trend t = compute_trend(p);
  EXPECT_DOUBLE_EQ(t.slope_per_s, 5e8);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
}

TEST(Trend, Empty) {
  Trend t = compute_trend({});
  EXPECT_EQ(t.points, 0u);
  EXPECT_DOUBLE_EQ(t.slope_per_s, 0);
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
}

TEST(Trend, SameTimestampHasNoSlope) {
  std::vector<TrendPoint> p{{1, 0}, {1, 10}, {1, 20}};
  Trend t = compute_trend(p);
  EXPECT_DOUBLE_EQ(t.slope_per_s, 0);
  EXPECT_TRUE(std::isfinite(t.r2));
  EXPECT_EQ(classify(t, bytes_thresholds()), TrendClass::flat);
}

TEST(Trend, UnevenSpacing) {
  // Samples late by a varying amount: the slope follows time, not index.
  std::vector<TrendPoint> p;
  double t_s = 0;
  for (int i = 0; i < 20; ++i) {
    t_s += 1.0 + (i % 3) * 0.5;
    p.push_back({t_s, 1000.0 * t_s});
  }
  EXPECT_NEAR(compute_trend(p).slope_per_s, 1000.0, 1e-6);
}

TEST(Trend, LinearLeakRanksAboveTheRest) {
  TrendThresholds th = bytes_thresholds();
  struct Named {
    const char* name;
    std::vector<TrendPoint> p;
  };
  std::vector<Named> all{{"plateau", series(kPlateau)},
                         {"sawtooth", series(kSawtooth)},
                         {"noise", noise()},
                         {"constant", series([](int) { return 7.0; })},
                         {"linear", series(kLinear)}};
  // Rank as triage does: only growing series, by slope.
  const char* best = nullptr;
  double best_slope = 0;
  int growing = 0;
  for (const Named& n : all) {
    Trend t = compute_trend(n.p);
    if (classify(t, th) != TrendClass::growing) continue;
    ++growing;
    if (!best || t.slope_per_s > best_slope) {
      best = n.name;
      best_slope = t.slope_per_s;
    }
  }
  EXPECT_EQ(growing, 1);
  ASSERT_NE(best, nullptr);
  EXPECT_STREQ(best, "linear");
  // The plateau's overall slope is larger than the leak's: only the
  // classification keeps it out of the ranking.
  EXPECT_GT(compute_trend(series(kPlateau)).slope_per_s, compute_trend(series(kLinear)).slope_per_s);
}

TEST(Trend, ClassNames) {
  EXPECT_EQ(to_string(TrendClass::growing), "growing");
  EXPECT_EQ(to_string(TrendClass::flat), "flat");
  EXPECT_EQ(to_string(TrendClass::shrinking), "shrinking");
  EXPECT_EQ(to_string(TrendClass::noisy), "noisy");
}

}  // namespace
}  // namespace kleak
