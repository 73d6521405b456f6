// Ta as the agent sets it: fast while checks may run, slow once settled. Fake clock, no libnice.
#include "impl/check_pacing.hpp"

#include <gtest/gtest.h>

namespace icepunch::impl {
namespace {

using namespace std::chrono_literals;

const CheckPacing::TimePoint t0 = CheckPacing::Clock::time_point{} + 1000s;

TEST(CheckPacingTest, FastUntilSettledThenOneConsentIntervalAtTheTopOfRfc7675sRange) {
    CheckPacing p{5ms};
    EXPECT_EQ(p.pacing(false, t0), 5ms);
    EXPECT_EQ(p.pacing(true, t0), 6000ms);
    EXPECT_EQ(p.pacing(false, t0 + 1s), 5ms) << "trouble or a restart: fast again at once";
    EXPECT_FALSE(p.reviewAt(true, t0));
}

TEST(CheckPacingTest, ALateCandidateKeepsItFastWhileItsChecksCanRun) {
    CheckPacing p{5ms};
    p.checksMayRun(t0);
    EXPECT_EQ(p.pacing(true, t0 + 1s), 5ms);
    EXPECT_EQ(p.reviewAt(true, t0 + 1s), t0 + CheckPacing::kLateChecks);
    p.checksMayRun(t0 + 2s); // another one extends the window
    EXPECT_EQ(p.pacing(true, t0 + CheckPacing::kLateChecks), 5ms);
    EXPECT_EQ(p.reviewAt(true, t0 + 3s), t0 + 2s + CheckPacing::kLateChecks);
    EXPECT_EQ(p.pacing(true, t0 + 2s + CheckPacing::kLateChecks), 6000ms);
    EXPECT_FALSE(p.reviewAt(true, t0 + 2s + CheckPacing::kLateChecks));
    EXPECT_FALSE(p.reviewAt(false, t0 + 1s)) << "not settled: a state change says when";
}

TEST(CheckPacingTest, AConfiguredTaAboveTheSettledOneIsKept) {
    CheckPacing p{8000ms};
    EXPECT_EQ(p.pacing(false, t0), 8000ms);
    EXPECT_EQ(p.pacing(true, t0), 8000ms);
}

} // namespace
} // namespace icepunch::impl
