// The agent's store of the app's callbacks: only those set take room, each keeps its own type,
// and what their captures hold is released with the store.
#include "impl/callback_set.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace icepunch::impl {
namespace {

TEST(CallbackSetTest, NothingSetLeavesEveryCallbackEmpty) {
    CallbackSet set{Agent::Callbacks{}};
    EXPECT_EQ(set.stored(), 0u);
    EXPECT_FALSE(set.localCandidate());
    EXPECT_FALSE(set.stateChanged());
    EXPECT_FALSE(set.received());
    EXPECT_FALSE(set.receivedMedia());
    EXPECT_FALSE(set.secureFailed());
}

TEST(CallbackSetTest, EachSetCallbackIsTheOneCalled) {
    std::string calls;
    Agent::Callbacks cb;
    // Two callbacks of the same signature, set apart, must not be mixed up.
    cb.disconnected = [&](StreamId s, ComponentId c, const std::string& why) {
        calls += "disconnected " + std::to_string(s) + "/" + std::to_string(c) + " " + why + ";";
    };
    cb.secureFailed = [&](StreamId, ComponentId, const std::string& why) {
        calls += "secureFailed " + why + ";";
    };
    cb.gatheringDone = [&](StreamId s) {
        calls += "gatheringDone " + std::to_string(s) + ";";
    };
    cb.stateChanged = [&](StreamId, ComponentId, ComponentState state) {
        calls += state == ComponentState::Connected ? "connected;" : "other;";
    };
    CallbackSet set{std::move(cb)};
    EXPECT_EQ(set.stored(), 4u);
    EXPECT_FALSE(set.received());
    EXPECT_FALSE(set.localCandidate());
    set.secureFailed()(1, 1, "mismatch");
    set.disconnected()(2, 1, "silence");
    set.gatheringDone()(3);
    set.stateChanged()(1, 1, ComponentState::Connected);
    EXPECT_EQ(calls, "secureFailed mismatch;disconnected 2/1 silence;gatheringDone 3;connected;");
}

TEST(CallbackSetTest, CapturesAreReleasedWithTheSet) {
    auto held = std::make_shared<int>(7);
    std::weak_ptr<int> watch = held;
    {
        Agent::Callbacks cb;
        cb.received = [held](StreamId, ComponentId, std::span<const std::byte>) {
        };
        cb.receivedMedia = [held](StreamId, ComponentId, std::span<const std::byte>) {
        };
        held.reset();
        CallbackSet set{std::move(cb)};
        EXPECT_FALSE(watch.expired()); // moved in, not dropped
        EXPECT_EQ(watch.use_count(), 2);
    }
    EXPECT_TRUE(watch.expired());
}

} // namespace
} // namespace icepunch::impl
