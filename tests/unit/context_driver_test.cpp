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
