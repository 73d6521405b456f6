// The driver that runs many GMainContexts on one thread: real GLib contexts, pipes and timers,
// no network.
#include "impl/context_driver.hpp"

#include <glib-unix.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

namespace icepunch::impl {
namespace {

using namespace std::chrono_literals;

struct Pipe {
    int read = -1, write = -1;
    Pipe() { open(); }
    explicit Pipe(bool) {} // none yet
    void open() {
        int fds[2];
        if (pipe(fds) == 0) {
            read = fds[0];
            write = fds[1];
        }
    }
    void closeBoth() {
        if (read >= 0) {
            close(read);
        }
        if (write >= 0) {
            close(write);
        }
        read = write = -1;
    }
};

// A source of `context` that runs fn whenever fd is readable.
GSource* watchFd(GMainContext* context, int fd, std::function<void()>* fn) {
    GSource* source = g_unix_fd_source_new(fd, G_IO_IN);
    g_source_set_callback(source, G_SOURCE_FUNC(+[](int, GIOCondition, gpointer data) -> gboolean {
                              (*static_cast<std::function<void()>*>(data))();
                              return G_SOURCE_CONTINUE;
                          }),
                          fn, nullptr);
    g_source_attach(source, context);
    return source;
}

void attachOnce(GMainContext* context, std::function<void()>* fn, guint afterMs = 0) {
    GSource* source = afterMs ? g_timeout_source_new(afterMs) : g_idle_source_new();
    g_source_set_callback(
        source,
        [](gpointer data) -> gboolean {
            (*static_cast<std::function<void()>*>(data))();
            return G_SOURCE_REMOVE;
        },
        fn, nullptr);
    g_source_attach(source, context);
    g_source_unref(source);
}

void drain(int fd) {
    char buffer[64];
    [[maybe_unused]] auto n = ::read(fd, buffer, sizeof buffer);
}

class ContextDriverTest : public ::testing::Test {
protected:
    ContextDriver driver;
    std::vector<GMainContext*> contexts;

    GMainContext* newContext() {
        GMainContext* context = ContextDriver::newContext();
        driver.add(context);
        contexts.push_back(context);
        return context;
    }
    // Turns until done() or `turns` turns of at most 100 ms each.
    bool runUntil(const std::function<bool()>& done, int turns = 50) {
        for (int i = 0; i < turns && !done(); ++i) {
            driver.turn(100ms);
        }
        return done();
    }
    void TearDown() override {
        for (auto* context : contexts) {
            g_main_context_unref(context);
        }
    }
};

TEST_F(ContextDriverTest, TimersOfManyContextsAllFireOnTheirOwnContext) {
    constexpr int kContexts = 40;
    std::vector<int> fired(kContexts, 0);
    std::vector<std::function<void()>> fns;
    fns.reserve(kContexts);
    for (int i = 0; i < kContexts; ++i) {
        GMainContext* context = newContext();
        fns.push_back([&, i, context] {
            EXPECT_TRUE(g_main_context_is_owner(context));
            ++fired[i];
        });
        attachOnce(context, &fns.back(), static_cast<guint>(1 + i % 7));
    }
    EXPECT_TRUE(runUntil(
        [&] { return std::all_of(fired.begin(), fired.end(), [](int n) { return n > 0; }); }));
    for (int i = 0; i < kContexts; ++i) {
        EXPECT_EQ(fired[i], 1) << "context " << i;
    }
}

// Timers of many contexts moved earlier and later after they were armed (a source destroyed and
// another attached, as libnice re-arms its own): each fires once, never before it was due, and
// the driver does not sleep past the earliest one (a lost order would fire the 1-60 ms timers
// with the 1.2 s ones).
TEST_F(ContextDriverTest, TimersReArmedEarlierAndLaterFireOnceAndNeverEarly) {
    constexpr int kContexts = 300;
    struct Slot {
        GMainContext* context = nullptr;
        GSource* source = nullptr;
        int64_t dueUs = 0;
        int64_t firedUs = 0;
        int fired = 0;
    };
    std::vector<Slot> slots(kContexts);
    auto arm = [](Slot& slot, guint ms) {
        if (slot.source) {
            g_source_destroy(slot.source);
            g_source_unref(slot.source);
        }
        slot.dueUs = g_get_monotonic_time() + int64_t(ms) * 1000;
        slot.source = g_timeout_source_new(ms);
        g_source_set_callback(
            slot.source,
            [](gpointer data) -> gboolean {
                auto* s = static_cast<Slot*>(data);
                s->firedUs = g_get_monotonic_time();
                ++s->fired;
                return G_SOURCE_REMOVE;
            },
            &slot, nullptr);
        g_source_attach(slot.source, slot.context);
    };
    for (int i = 0; i < kContexts; ++i) {
        slots[i].context = newContext();
        arm(slots[i], 5000); // far out first, so the re-arms below move every timer
    }
    driver.turn(0ms);
    for (int i = 0; i < kContexts; ++i) {
        // A third later (60 s), a third much earlier (1-60 ms), a third between (1.2-1.5 s).
        guint ms = i % 3 == 0   ? 60000
                   : i % 3 == 1 ? static_cast<guint>(1 + (i * 7) % 60)
                                : static_cast<guint>(1200 + (i * 13) % 300);
        arm(slots[i], ms);
    }
    auto firedEarly = [&] {
        for (int i = 0; i < kContexts; ++i) {
            if (i % 3 != 0 && slots[i].fired == 0) {
                return false;
            }
        }
        return true;
    };
    // Turns that may sleep up to 2 s: a driver that lost track of the earliest timer sleeps that
    // long, and the timers fire late.
    for (int turn = 0; turn < 400 && !firedEarly(); ++turn) {
        driver.turn(2000ms);
    }
    EXPECT_TRUE(firedEarly());
    for (int i = 0; i < kContexts; ++i) {
        const Slot& slot = slots[i];
        if (i % 3 == 0) {
            EXPECT_EQ(slot.fired, 0) << "context " << i << " was moved to 60 s";
        } else {
            EXPECT_EQ(slot.fired, 1) << "context " << i;
            EXPECT_GE(slot.firedUs, slot.dueUs) << "context " << i << " fired early";
            EXPECT_LT(slot.firedUs - slot.dueUs, 1000000)
                << "context " << i << " fired a second late";
        }
    }
    for (auto& slot : slots) {
        if (slot.source) {
            g_source_destroy(slot.source);
            g_source_unref(slot.source);
        }
    }
}

TEST_F(ContextDriverTest, AReadableFdRunsOnlyItsContext) {
    GMainContext* a = newContext();
    GMainContext* b = newContext();
    Pipe pa, pb;
    int ranA = 0, ranB = 0;
    std::function<void()> onA = [&] {
        drain(pa.read);
        ++ranA;
    };
    std::function<void()> onB = [&] {
        drain(pb.read);
        ++ranB;
    };
    GSource* sa = watchFd(a, pa.read, &onA);
    GSource* sb = watchFd(b, pb.read, &onB);
    ASSERT_EQ(write(pa.write, "x", 1), 1);
    EXPECT_TRUE(runUntil([&] { return ranA > 0; }));
    EXPECT_EQ(ranB, 0);
    ASSERT_EQ(write(pb.write, "y", 1), 1);
    EXPECT_TRUE(runUntil([&] { return ranB > 0; }));
    EXPECT_EQ(ranA, 1);
    for (GSource* s : {sa, sb}) {
        g_source_destroy(s);
        g_source_unref(s);
    }
    pa.closeBoth();
    pb.closeBoth();
}

TEST_F(ContextDriverTest, ASourceAttachedFromAnotherThreadWakesAWaitingDriver) {
    GMainContext* a = newContext();
    bool ran = false;
    std::function<void()> fn = [&] {
        ran = true;
    };
    std::thread other([&] {
        std::this_thread::sleep_for(50ms); // the driver is waiting by then, most likely
        attachOnce(a, &fn);
    });
    // One long turn: it must end because of the attach, not its 10 s limit.
    for (int i = 0; i < 3 && !ran; ++i) {
        driver.turn(10s);
    }
    other.join();
    EXPECT_TRUE(ran);
}

TEST_F(ContextDriverTest, ASourceAttachedToAnotherContextFromADispatchRuns) {
    GMainContext* a = newContext();
    GMainContext* b = newContext();
    bool ranB = false;
    std::function<void()> onB = [&] {
        ranB = true;
    };
    std::function<void()> onA = [&] {
        attachOnce(b, &onB);
    };
    attachOnce(a, &onA);
    EXPECT_TRUE(runUntil([&] { return ranB; }));
}

TEST_F(ContextDriverTest, AnFdClosedAndReopenedUnderTheSameNumberInOneDispatchStillDelivers) {
    GMainContext* a = newContext();
    Pipe first;
    int firstRuns = 0, secondRuns = 0;
    std::function<void()> onFirst = [&] {
        drain(first.read);
        ++firstRuns;
    };
    GSource* source = watchFd(a, first.read, &onFirst);
    ASSERT_EQ(write(first.write, "x", 1), 1);
    ASSERT_TRUE(runUntil([&] { return firstRuns > 0; }));

    Pipe second(false);
    std::function<void()> onSecond = [&] {
        drain(second.read);
        ++secondRuns;
    };
    GSource* replacement = nullptr;
    int oldNumber = first.read;
    std::function<void()> swap = [&] {
        g_source_destroy(source);
        g_source_unref(source);
        first.closeBoth();
        second.open();
        replacement = watchFd(a, second.read, &onSecond);
    };
    attachOnce(a, &swap);
    ASSERT_TRUE(runUntil([&] { return replacement != nullptr; }));
    if (second.read != oldNumber) {
        GTEST_SKIP() << "the new pipe did not reuse fd " << oldNumber;
    }
    for (int i = 0; i < 3; ++i) {
        driver.turn(10ms); // settle: the driver re-reads the context's fds
    }
    ASSERT_EQ(write(second.write, "y", 1), 1);
    EXPECT_TRUE(runUntil([&] { return secondRuns > 0; }));
    g_source_destroy(replacement);
    g_source_unref(replacement);
    second.closeBoth();
}

TEST_F(ContextDriverTest, AnFdReopenedByAnotherContextStaysWatchedThere) {
    GMainContext* a = newContext();
    GMainContext* b = newContext();
    Pipe first;
    int ranA = 0, ranB = 0;
    std::function<void()> onA = [&] {
        drain(first.read);
        ++ranA;
    };
    GSource* source = watchFd(a, first.read, &onA);
    ASSERT_EQ(write(first.write, "x", 1), 1);
    ASSERT_TRUE(runUntil([&] { return ranA > 0; }));

    Pipe second(false);
    std::function<void()> onB = [&] {
        drain(second.read);
        ++ranB;
    };
    GSource* moved = nullptr;
    int oldNumber = first.read;
    std::function<void()> swap = [&] {
        g_source_destroy(source);
        g_source_unref(source);
        first.closeBoth();
        second.open();
        moved = watchFd(b, second.read, &onB); // same number, now in b
    };
    attachOnce(a, &swap);
    ASSERT_TRUE(runUntil([&] { return moved != nullptr; }));
    if (second.read != oldNumber) {
        GTEST_SKIP() << "the new pipe did not reuse fd " << oldNumber;
    }
    // Both contexts re-read their fds; a's letting go of the number must not unwatch b's.
    std::function<void()> nudgeA = [] {
    };
    attachOnce(a, &nudgeA);
    for (int i = 0; i < 3; ++i) {
        driver.turn(10ms);
    }
    ASSERT_EQ(write(second.write, "y", 1), 1);
    EXPECT_TRUE(runUntil([&] { return ranB > 0; }));
    EXPECT_EQ(ranA, 1);
    g_source_destroy(moved);
    g_source_unref(moved);
    second.closeBoth();
}

// A source that goes away while its fd stays open and readable (a watch given up, the socket
// kept): the context must not run again for it, and the stale watch goes at its first report.
TEST_F(ContextDriverTest, ASourceGoneFromAnOpenReadableFdStopsWakingItsContext) {
    GMainContext* a = newContext();
    Pipe p;
    int runs = 0;
    GSource* source = g_unix_fd_source_new(p.read, G_IO_IN);
    g_source_set_callback(source, G_SOURCE_FUNC(+[](int, GIOCondition, gpointer data) -> gboolean {
                              ++*static_cast<int*>(data);
                              return G_SOURCE_REMOVE; // never drained: the fd stays readable
                          }),
                          &runs, nullptr);
    g_source_attach(source, a);
    g_source_unref(source);
    ASSERT_EQ(write(p.write, "x", 1), 1);
    ASSERT_TRUE(runUntil([&] { return runs > 0; }));
    driver.turn(10ms); // the stale watch reports once more and is dropped
    auto iterationsBefore = driver.stats().iterations;
    for (int i = 0; i < 5; ++i) {
        driver.turn(1ms);
    }
    EXPECT_EQ(runs, 1);
    EXPECT_EQ(driver.stats().iterations, iterationsBefore) << "a readable fd nobody watches";
    EXPECT_GE(driver.stats().dropped, 1u);
    p.closeBoth();
}

TEST_F(ContextDriverTest, AQuietContextCostsNoIterations) {
    GMainContext* a = newContext();
    Pipe p;
    int runs = 0;
    std::function<void()> fn = [&] {
        drain(p.read);
        ++runs;
    };
    GSource* source = watchFd(a, p.read, &fn);
    for (int i = 0; i < 3; ++i) {
        driver.turn(0ms); // settle after the attach
    }
    auto before = driver.stats().iterations;
    for (int i = 0; i < 5; ++i) {
        driver.turn(1ms);
    }
    EXPECT_EQ(driver.stats().iterations, before) << "nothing happened, nothing should run";
    EXPECT_EQ(runs, 0);
    g_source_destroy(source);
    g_source_unref(source);
    p.closeBoth();
}

} // namespace
} // namespace icepunch::impl
