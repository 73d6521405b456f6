// The consent and disconnection policy on a fake clock: no sockets, no libnice.
#include "impl/liveness.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace icepunch::impl {
namespace {

using namespace std::chrono_literals;
using Action = Liveness::ConsentAction;

class LivenessTest : public ::testing::Test {
protected:
    Liveness::TimePoint t0 = Liveness::Clock::time_point{} + 1000s;
    Liveness live;
    void SetUp() override { live.connected(t0); }
};

TEST_F(LivenessTest, ConsentExpiresOnlyAfterThirtySecondsWithoutAnswer) {
    // Answers stop at t0 + 100 s; libnice times out 10 s later and every 10 s after a re-arm.
    auto stop = t0 + 100s;
    EXPECT_EQ(live.consentTimeout(stop + 10s), Action::Rearm);
    EXPECT_TRUE(live.evaluate(stop + 12s).disconnected);
    EXPECT_EQ(live.consentTimeout(stop + 20s), Action::Rearm);
    EXPECT_EQ(live.consentTimeout(stop + 30s), Action::Expired);
}

TEST_F(LivenessTest, ALongHealthyCallDoesNotExpireOnItsFirstTimeout) {
    // An hour of answers, then one libnice timeout: 10 s without an answer, not an hour.
    EXPECT_EQ(live.consentTimeout(t0 + 3600s), Action::Rearm);
    EXPECT_EQ(live.consentFreshAt(), t0 + 3590s);
}

TEST_F(LivenessTest, AnAnswerAfterARearmEndsTheStreak) {
    EXPECT_EQ(live.consentTimeout(t0 + 10s), Action::Rearm);
    EXPECT_EQ(live.consentTimeout(t0 + 20s), Action::Rearm);
    // No timeout for a whole window: an answer came after the re-arm at t0 + 20 s.
    auto v = live.evaluate(t0 + 32s);
    EXPECT_FALSE(v.disconnected) << v.reason;
    EXPECT_EQ(live.consentMisses(), 0u);
    // Then answers stop again: a fresh 30 s.
    EXPECT_EQ(live.consentTimeout(t0 + 45s), Action::Rearm);
    EXPECT_EQ(live.consentTimeout(t0 + 55s), Action::Rearm);
    EXPECT_EQ(live.consentTimeout(t0 + 65s), Action::Expired);
}

TEST_F(LivenessTest, TimeoutsFarApartNeverExpire) {
    // Lossy path: every other window has an answer. Never 30 s without one.
    auto t = t0;
    for (int i = 0; i < 100; ++i) {
        t += 10s;
        ASSERT_EQ(live.consentTimeout(t), Action::Rearm) << "timeout " << i;
        t += 12s;
        live.evaluate(t);
    }
}

TEST_F(LivenessTest, SilenceWhileSendingIsDisconnected) {
    live.received(t0 + 1s);
    for (auto t = t0 + 1s; t < t0 + 5s; t += 20ms) {
        live.sent(t);
    }
    auto v = live.evaluate(t0 + 5s);
    EXPECT_TRUE(v.disconnected);
    EXPECT_NE(v.reason.find("heard nothing"), std::string::npos) << v.reason;
    // Traffic returns: connected again without anything else.
    live.received(t0 + 5100ms);
    EXPECT_FALSE(live.evaluate(t0 + 5200ms).disconnected);
}

TEST_F(LivenessTest, UnansweredConsentWhileDatagramsArriveIsALossyPathNotALostOne) {
    EXPECT_EQ(live.consentTimeout(t0 + 10s), Action::Rearm);
    live.received(t0 + 10500ms);
    EXPECT_FALSE(live.evaluate(t0 + 11s).disconnected);
    // The datagrams stop too: now it is disconnected.
    auto v = live.evaluate(t0 + 13s);
    EXPECT_TRUE(v.disconnected);
    EXPECT_NE(v.reason.find("consent"), std::string::npos) << v.reason;
}

TEST_F(LivenessTest, AStreakOfTimeoutsWhileDatagramsArriveDoesNotExpireConsent) {
    // The NAT lab's 20 % loss call: libnice timed out every ~10 s for 30 s (each re-arm's first
    // check answered at once, the next ones lost) while the peer's pings kept coming.
    auto t = t0 + 60s;
    for (auto d = t0; d <= t + 40s; d += 20ms) {
        live.received(d);
        if (d == t || d == t + 10s || d == t + 20s || d == t + 30s || d == t + 40s) {
            ASSERT_EQ(live.consentTimeout(d), Action::Rearm) << "at " << (d - t0) / 1s << " s";
        }
    }
    // The peer falls silent too: the next timeout in the streak expires consent.
    EXPECT_EQ(live.consentTimeout(t + 50s), Action::Expired);
}

TEST_F(LivenessTest, QuietCallIsNotDisconnected) {
    // Neither side sends: nothing to judge by but consent.
    live.received(t0 + 1s);
    live.sent(t0 + 1s);
    EXPECT_FALSE(live.evaluate(t0 + 60s).disconnected);
}

TEST_F(LivenessTest, ASenderThatNeverHeardThePeerReliesOnConsent) {
    // One-way media: we send, the peer never sends. That is no sign of trouble.
    for (auto t = t0; t < t0 + 10s; t += 20ms) {
        live.sent(t);
    }
    EXPECT_FALSE(live.evaluate(t0 + 10s).disconnected);
}

TEST_F(LivenessTest, ShortGapsUnderLossAreNotDisconnected) {
    // 20 % loss on two routers, 50 datagrams/s: gaps of a few hundred ms at most.
    live.received(t0);
    for (auto t = t0; t < t0 + 10s; t += 20ms) {
        live.sent(t);
        if ((t - t0) % 300ms == 0ms) {
            live.received(t);
        }
        ASSERT_FALSE(live.evaluate(t).disconnected);
    }
}

TEST_F(LivenessTest, ANewPairStartsFresh) {
    live.received(t0);
    for (auto t = t0; t < t0 + 3s; t += 20ms) {
        live.sent(t);
    }
    ASSERT_TRUE(live.evaluate(t0 + 3s).disconnected);
    EXPECT_EQ(live.consentTimeout(t0 + 10s), Action::Rearm);
    live.connected(t0 + 11s); // restarted onto a new pair
    live.sent(t0 + 11500ms);
    EXPECT_FALSE(live.evaluate(t0 + 12s).disconnected);
    EXPECT_EQ(live.consentMisses(), 0u);
}

TEST_F(LivenessTest, QuietOnlyWhileNothingIsSentAndNoConsentWindowIsOpen) {
    // Nothing sent: nothing for a timer to find, the agent may stop ticking.
    EXPECT_TRUE(live.quiet(t0 + 1s));
    // Sending: the silence rule can fire, so it is watched until a whole window after the send.
    live.sent(t0 + 5s);
    EXPECT_FALSE(live.quiet(t0 + 5s));
    EXPECT_FALSE(live.quiet(t0 + 6s));
    EXPECT_TRUE(live.quiet(t0 + 7s));
    // A re-armed consent window must be settled by a tick, sending or not.
    EXPECT_EQ(live.consentTimeout(t0 + 20s), Action::Rearm);
    EXPECT_FALSE(live.quiet(t0 + 21s));
    live.evaluate(t0 + 32s); // a whole window without another timeout: an answer came
    EXPECT_TRUE(live.quiet(t0 + 32s));
}

TEST(LivenessNotStartedTest, IsQuiet) {
    Liveness live;
    EXPECT_TRUE(live.quiet(Liveness::Clock::time_point{} + 1s));
}

TEST(RecoveryTest, RetriesWithBackoffUntilTheDeadline) {
    Recovery r;
    auto t = Liveness::Clock::time_point{} + 100s;
    ASSERT_TRUE(r.begin(t));
    EXPECT_FALSE(r.begin(t + 1s)) << "one recovery at a time";
    std::vector<long> backoffs;
    auto now = t;
    for (int i = 0; i < 20; ++i) {
        now += r.config().attemptTimeout;
        auto d = r.attemptFailed(now);
        if (d.giveUp) {
            break;
        }
        backoffs.push_back(static_cast<long>(d.retryAfter.count()));
        now += d.retryAfter;
    }
    EXPECT_FALSE(r.active());
    EXPECT_LE(now - t, r.config().giveUpAfter + r.config().attemptTimeout);
    ASSERT_GE(backoffs.size(), 3u);
    EXPECT_EQ(backoffs[0], 500);
    EXPECT_EQ(backoffs[1], 1000);
    EXPECT_EQ(backoffs[2], 2000);
    for (long b : backoffs) {
        EXPECT_LE(b, 4000);
    }
}

TEST(RecoveryTest, EachAttemptGetsMoreTimeButNotPastTheDeadline) {
    Recovery r;
    auto t = Liveness::Clock::time_point{} + 100s;
    ASSERT_TRUE(r.begin(t));
    std::vector<long> timeouts;
    auto now = t;
    for (int i = 0; i < 5; ++i) {
        auto timeout = r.attemptTimeout(now);
        timeouts.push_back(static_cast<long>(timeout.count()));
        now += timeout;
        auto d = r.attemptFailed(now);
        if (d.giveUp) {
            break;
        }
        now += d.retryAfter;
    }
    // 5 s, then 10 s (after 500 ms of backoff), then what is left of the 30 s: 30 - 16.5.
    EXPECT_EQ(timeouts, (std::vector<long>{5000, 10000, 13500}));
    EXPECT_FALSE(r.active());
    EXPECT_EQ(now - t, r.config().giveUpAfter) << "the last attempt ends at the deadline";
    r.recovered();
    ASSERT_TRUE(r.begin(now));
    EXPECT_EQ(r.attemptTimeout(now).count(), 5000) << "a new recovery starts short again";
    Recovery::Config capped;
    capped.giveUpAfter = 300s;
    Recovery longer(capped);
    ASSERT_TRUE(longer.begin(t));
    for (int i = 0; i < 4; ++i) {
        longer.attemptFailed(t + 1s);
    }
    EXPECT_EQ(longer.attemptTimeout(t + 2s), capped.maxAttemptTimeout);
}

TEST(RecoveryTest, ThePeersNewSessionIsAnsweredSoonButNotInAStorm) {
    Recovery r;
    auto t = Liveness::Clock::time_point{} + 100s;
    ASSERT_TRUE(r.begin(t));
    // The attempt failed at once (nothing listens on the TURN port yet); the peer's new session
    // arrives 5 ms later: not answered before firstBackoff has passed since the failure.
    auto failed = t + 10ms;
    auto d = r.attemptFailed(failed);
    ASSERT_FALSE(d.giveUp);
    EXPECT_EQ(r.answerAt(failed + 5ms), failed + r.config().firstBackoff);
    // A later attempt: the backoff has grown to 1 s, but the peer's restart is answered at once
    // when it comes after firstBackoff, and firstBackoff after the failure when it comes sooner.
    auto again = failed + d.retryAfter + 5s;
    d = r.attemptFailed(again);
    ASSERT_FALSE(d.giveUp);
    EXPECT_EQ(d.retryAfter, 1000ms);
    EXPECT_EQ(r.answerAt(again + 700ms), again + 700ms);
    EXPECT_EQ(r.answerAt(again + 100ms), again + r.config().firstBackoff);
    EXPECT_LT(r.answerAt(again + 100ms), again + d.retryAfter);
}

TEST(RecoveryTest, RecoveredEndsItAndTheNextTroubleStartsAgain) {
    Recovery r;
    auto t = Liveness::Clock::time_point{} + 100s;
    ASSERT_TRUE(r.begin(t));
    r.attemptFailed(t + 5s);
    EXPECT_EQ(r.attempts(), 2u);
    r.recovered();
    EXPECT_FALSE(r.active());
    ASSERT_TRUE(r.begin(t + 60s));
    EXPECT_EQ(r.attempts(), 1u);
    EXPECT_EQ(r.since(), t + 60s);
}

} // namespace
} // namespace icepunch::impl
