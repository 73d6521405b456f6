// MdnsResolver against a responder across a veth pair: two network namespaces made per test
// (md<pid>-a with the resolver's loop, md<pid>-b with tests/integration/mdns_responder.py), so
// that no mDNS query ever leaves them. Needs root: otherwise every test is skipped.
#include "agent_harness.hpp"
#include "impl/event_loop_impl.hpp"
#include "impl/mdns_resolver.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifndef MDNS_RESPONDER_PY
#error "MDNS_RESPONDER_PY must be defined (path of tests/integration/mdns_responder.py)"
#endif
#ifndef MDNS_PYTHON3
#define MDNS_PYTHON3 "python3"
#endif

namespace icepunch::impl {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

const std::string kAddressA = "198.51.100.1";
const std::string kAddressB = "198.51.100.2";
const std::string kName = "8d3b1a6e-2f4c-4e57-9b1d-0c6a5e7f9a21.local";

struct CommandResult {
    int rc = -1;
    std::string output; // stdout and stderr
};

CommandResult run(const std::string& command) {
    CommandResult result;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (pipe == nullptr) {
        result.output = "popen failed";
        return result;
    }
    std::array<char, 4096> buffer;
    size_t n;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
        result.output.append(buffer.data(), n);
    }
    int status = ::pclose(pipe);
    result.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result;
}

// The responder script in a namespace: its output lines collected by a reader thread.
class Responder {
public:
    ~Responder() { stop(); }

    // Empty on success (the ready line came), else why not with the output so far.
    std::string start(const std::string& ns, const std::vector<std::string>& args) {
        std::vector<std::string> argv = {"ip",         "netns", "exec",           ns,
                                         MDNS_PYTHON3, "-u",    MDNS_RESPONDER_PY};
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> cargv;
        for (auto& a : argv) {
            cargv.push_back(a.data());
        }
        cargv.push_back(nullptr);
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            return "pipe2 failed";
        }
        pid_t parent = ::getpid();
        pid_ = ::fork();
        if (pid_ == 0) {
            // Dies with the test, even when the test is killed.
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) {
                ::_exit(127);
            }
            ::dup2(fds[1], 1);
            ::dup2(fds[1], 2);
            ::execvp("ip", cargv.data()); // `ip netns exec` execs: the PID is python's
            ::_exit(127);
        }
        ::close(fds[1]);
        if (pid_ < 0) {
            ::close(fds[0]);
            return "fork failed";
        }
        reader_ = std::thread([this, fd = fds[0]] { read(fd); });
        if (!waitForLine("ready port=5353", 10s)) {
            return "the responder printed no ready line within 10 s:\n" + output();
        }
        return {};
    }

    // SIGTERM to our PID, SIGKILL after 2 s; idempotent.
    void stop() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            auto deadline = Clock::now() + 2s;
            while (::waitpid(pid_, &status, WNOHANG) == 0) {
                if (Clock::now() >= deadline) {
                    ::kill(pid_, SIGKILL);
                    ::waitpid(pid_, &status, 0);
                    break;
                }
                std::this_thread::sleep_for(10ms);
            }
            pid_ = -1;
        }
        if (reader_.joinable()) {
            reader_.join();
        }
    }

    // Lines reach the test after the packets sent beside them: wait for them, do not assume.
    bool waitForLine(const std::string& text, milliseconds timeout, int times = 1) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] {
            return countLocked(text) >= times || eof_;
        }) && countLocked(text) >= times;
    }
    int count(const std::string& text) {
        std::lock_guard lock(mutex_);
        return countLocked(text);
    }
    std::string output() {
        std::lock_guard lock(mutex_);
        std::string all;
        for (const auto& line : lines_) {
            all += line + "\n";
        }
        return all;
    }

private:
    int countLocked(const std::string& text) const {
        int n = 0;
        for (const auto& line : lines_) {
            n += line.find(text) != std::string::npos ? 1 : 0;
        }
        return n;
    }

    void read(int fd) {
        std::string partial;
        std::array<char, 4096> buffer;
        ssize_t n;
        while ((n = ::read(fd, buffer.data(), buffer.size())) > 0 || (n < 0 && errno == EINTR)) {
            partial.append(buffer.data(), static_cast<size_t>(std::max<ssize_t>(n, 0)));
            std::lock_guard lock(mutex_);
            for (size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
                lines_.push_back(partial.substr(0, nl));
                partial.erase(0, nl + 1);
            }
            changed_.notify_all();
        }
        ::close(fd);
        std::lock_guard lock(mutex_);
        if (!partial.empty()) {
            lines_.push_back(partial);
        }
        eof_ = true;
        changed_.notify_all();
    }

    pid_t pid_ = -1;
    std::thread reader_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::string> lines_;
    bool eof_ = false;
};

struct Outcome {
    Result<std::vector<std::string>> result;
    milliseconds elapsed;
};

// What a resolve() reports: the first done, and how many there were.
struct Pending {
    std::promise<Outcome> promise;
    std::future<Outcome> future = promise.get_future();
    std::atomic<int> calls{0};
};

class MdnsResolverTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (::geteuid() != 0) {
            GTEST_SKIP() << "needs root to make network namespaces";
        }
        std::string tag = "md" + std::to_string(::getpid());
        nsA_ = tag + "-a";
        nsB_ = tag + "-b";
        vethA_ = tag + "a";
        vethB_ = tag + "b";
        deleteNamespaces(); // a leftover of this process's earlier test
        if (auto r = run("ip netns add " + nsA_); r.rc != 0) {
            GTEST_SKIP() << "ip netns add failed (no network namespaces here): " << r.output;
        }
        namespacesMade_ = true;
        for (const std::string& command : {
                 "ip netns add " + nsB_,
                 "ip link add " + vethA_ + " netns " + nsA_ + " type veth peer name " + vethB_ +
                     " netns " + nsB_,
                 "ip -n " + nsA_ + " addr add " + kAddressA + "/24 dev " + vethA_,
                 "ip -n " + nsB_ + " addr add " + kAddressB + "/24 dev " + vethB_,
                 "ip -n " + nsA_ + " link set lo up",
                 "ip -n " + nsB_ + " link set lo up",
                 "ip -n " + nsA_ + " link set " + vethA_ + " up",
                 "ip -n " + nsB_ + " link set " + vethB_ + " up",
                 "ip -n " + nsA_ + " route add 224.0.0.0/4 dev " + vethA_,
                 "ip -n " + nsB_ + " route add 224.0.0.0/4 dev " + vethB_,
             }) {
            auto r = run(command);
            ASSERT_EQ(r.rc, 0) << command << ": " << r.output;
        }
        ASSERT_TRUE(linkUp(nsA_, vethA_) && linkUp(nsB_, vethB_)) << "the veth pair is not up";

        auto loop = EventLoop::createInNetworkNamespace(nsA_, "mdns-a");
        ASSERT_TRUE(loop.ok()) << loop.error().message;
        loop_ = *loop;
        loop_->invoke([&] { resolver_ = MdnsResolver::create(loop_->impl().context()); });
    }

    void TearDown() override {
        if (loop_) {
            loop_->invoke([&] { resolver_.reset(); });
            loop_.reset();
        }
        responder_.stop();
        if (namespacesMade_) {
            deleteNamespaces();
        }
    }

    void deleteNamespaces() {
        run("ip netns del " + nsA_);
        run("ip netns del " + nsB_); // takes the veth pair with it
    }

    // Waits (bounded) until the link reports state UP: before that the first queries may be lost.
    static bool linkUp(const std::string& ns, const std::string& link) {
        auto deadline = Clock::now() + 5s;
        while (Clock::now() < deadline) {
            if (run("ip -n " + ns + " -o link show " + link).output.find("state UP") !=
                std::string::npos) {
                return true;
            }
            std::this_thread::sleep_for(20ms);
        }
        return false;
    }

    std::string startResponder(const std::string& mode, std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"--name",      kName,     "--address", kAddressB,
                                         "--interface", kAddressB, "--mode",    mode};
        args.insert(args.end(), extra.begin(), extra.end());
        return responder_.start(nsB_, args);
    }

    // Starts a resolution on the loop; `resolver_` is only touched there.
    std::shared_ptr<Pending> resolve(const std::string& name, milliseconds timeout,
                                     std::function<void()> afterDone = {}) {
        auto pending = std::make_shared<Pending>();
        loop_->post([this, pending, name, timeout, afterDone] {
            auto start = Clock::now();
            resolver_->resolve(name, timeout, [pending, start, afterDone](auto result) {
                if (pending->calls++ == 0) {
                    auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
                    pending->promise.set_value({std::move(result), elapsed});
                }
                if (afterDone) {
                    afterDone();
                }
            });
        });
        return pending;
    }

    // The outcome within `limit`, or a failure.
    static Outcome wait(Pending& pending, milliseconds limit) {
        if (pending.future.wait_for(limit) != std::future_status::ready) {
            ADD_FAILURE() << "done was not called within " << limit.count() << " ms";
            return {Error{"not called"}, limit};
        }
        return pending.future.get();
    }

    // Runs on the loop after everything already queued and every timer due in `delay`.
    void drainLoop(milliseconds delay) {
        std::promise<void> done;
        loop_->post([&] {
            GSource* timer = g_timeout_source_new(static_cast<guint>(delay.count()));
            g_source_set_callback(
                timer,
                [](gpointer data) {
                    static_cast<std::promise<void>*>(data)->set_value();
                    return G_SOURCE_REMOVE;
                },
                &done, nullptr);
            g_source_attach(timer, loop_->impl().context());
            g_source_unref(timer);
        });
        ASSERT_EQ(done.get_future().wait_for(delay + 5s), std::future_status::ready);
    }

    std::string nsA_, nsB_, vethA_, vethB_;
    bool namespacesMade_ = false;
    std::shared_ptr<EventLoop> loop_;
    std::shared_ptr<MdnsResolver> resolver_;
    Responder responder_;
};

TEST_F(MdnsResolverTest, ResolvesToTheResponderAddress) {
    ASSERT_EQ(startResponder("answer"), "");
    auto pending = resolve(kName, 3000ms);
    auto outcome = wait(*pending, 5s);
    ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message << "\n"
                                     << responder_.output();
    EXPECT_THAT(*outcome.result, ElementsAre(kAddressB));
    EXPECT_LT(outcome.elapsed, 1000ms);
    ASSERT_TRUE(responder_.waitForLine("answered " + kAddressA, 2s)) << responder_.output();
    // A one-shot query: from a's address and an ephemeral port, A and AAAA with the QU bit.
    EXPECT_EQ(responder_.count("query from " + kAddressA + ":5353"), 0) << responder_.output();
    EXPECT_GE(responder_.count("query from " + kAddressA + ":"), 1);
    EXPECT_GE(responder_.count("questions=" + kName + "/1/qu," + kName + "/28/qu"), 1);
    drainLoop(700ms); // past every retransmission: done stays called once
    EXPECT_EQ(pending->calls, 1);
}

TEST_F(MdnsResolverTest, NamesCompareWithoutCase) {
    ASSERT_EQ(startResponder("answer"), "");
    std::string upper = kName;
    for (char& c : upper) {
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    auto outcome = wait(*resolve(upper, 3000ms), 5s);
    ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
    EXPECT_THAT(*outcome.result, ElementsAre(kAddressB));
}

TEST_F(MdnsResolverTest, SeveralNamesInFlight) {
    ASSERT_EQ(startResponder("answer"), "");
    auto unknown = resolve("unknown-host.local", 800ms);
    auto first = resolve(kName, 3000ms);
    auto second = resolve(kName, 3000ms);

    for (auto* p : {first.get(), second.get()}) {
        auto outcome = wait(*p, 5s);
        ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
        EXPECT_THAT(*outcome.result, ElementsAre(kAddressB));
    }
    auto outcome = wait(*unknown, 5s);
    ASSERT_FALSE(outcome.result.ok());
    EXPECT_EQ(outcome.result.error().message,
              "no answer from an mDNS responder for unknown-host.local within 800 ms");
    EXPECT_GE(outcome.elapsed, 799ms);
    EXPECT_LT(outcome.elapsed, 2000ms);
    EXPECT_EQ(unknown->calls + first->calls + second->calls, 3);
}

TEST_F(MdnsResolverTest, RetransmissionsReachTheResponder) {
    ASSERT_EQ(startResponder("answer", {"--drop", "2"}), "");
    auto outcome = wait(*resolve(kName, 3000ms), 5s);
    ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message << "\n"
                                     << responder_.output();
    EXPECT_THAT(*outcome.result, ElementsAre(kAddressB));
    ASSERT_TRUE(responder_.waitForLine("answered " + kAddressA, 2s)) << responder_.output();
    EXPECT_EQ(responder_.count("dropped query"), 2);
    EXPECT_GE(outcome.elapsed, 590ms); // answered only after the third query, at 600 ms
    EXPECT_LT(outcome.elapsed, 2000ms);
}

TEST_F(MdnsResolverTest, NoResponderFailsInBoundedTime) {
    auto outcome = wait(*resolve(kName, 700ms), 5s);
    ASSERT_FALSE(outcome.result.ok());
    EXPECT_EQ(outcome.result.error().code, ErrorCode::Failed);
    EXPECT_EQ(outcome.result.error().message,
              "no answer from an mDNS responder for " + kName + " within 700 ms");
    EXPECT_GE(outcome.elapsed, 699ms);
    EXPECT_LT(outcome.elapsed, 2000ms);
}

TEST_F(MdnsResolverTest, SilentResponderSeesThreeQueries) {
    ASSERT_EQ(startResponder("silent"), "");
    auto outcome = wait(*resolve(kName, 1000ms), 5s);
    ASSERT_FALSE(outcome.result.ok());
    EXPECT_THAT(outcome.result.error().message, HasSubstr("no answer from an mDNS responder"));
    EXPECT_TRUE(responder_.waitForLine("query from " + kAddressA, 2s, 3));
    drainLoop(200ms); // a fourth query would be seen by now
    EXPECT_EQ(responder_.count("query from " + kAddressA), 3) << responder_.output();
}

TEST_F(MdnsResolverTest, GarbageAnswersAreIgnored) {
    ASSERT_EQ(startResponder("garbage"), "");
    auto outcome = wait(*resolve(kName, 1000ms), 5s);
    ASSERT_FALSE(outcome.result.ok()) << "resolved from garbage:\n" << responder_.output();
    EXPECT_EQ(outcome.result.error().message,
              "no answer from an mDNS responder for " + kName + " within 1000 ms");
    // Each bad packet went out, once per query, including a valid answer from another port.
    EXPECT_TRUE(responder_.waitForLine("garbage not_from_5353", 2s, 3)) << responder_.output();
    EXPECT_EQ(responder_.count("garbage pointer_loop"), 3);
}

TEST_F(MdnsResolverTest, InvalidNameFailsLaterNotInsideResolve) {
    std::atomic<bool> insideResolve{false};
    auto pending = std::make_shared<Pending>();
    loop_->post([&, pending] {
        insideResolve = true;
        resolver_->resolve("printer.example.com", 1000ms, [&, pending](auto result) {
            EXPECT_FALSE(insideResolve);
            pending->calls++;
            pending->promise.set_value({std::move(result), 0ms});
        });
        insideResolve = false;
    });
    auto outcome = wait(*pending, 5s);
    ASSERT_FALSE(outcome.result.ok());
    EXPECT_EQ(outcome.result.error().code, ErrorCode::InvalidArgument);
    EXPECT_THAT(outcome.result.error().message, HasSubstr(".local"));
}

TEST_F(MdnsResolverTest, CancelAllDropsPendingResolutions) {
    ASSERT_EQ(startResponder("silent"), "");
    auto pending = std::make_shared<Pending>();
    std::atomic<std::size_t> left{99};
    loop_->post([&, pending] {
        resolver_->resolve(kName, 200ms, [pending](auto) { pending->calls++; });
        resolver_->resolve("other.local", 200ms, [pending](auto) { pending->calls++; });
        resolver_->cancelAll();
        left = resolver_->pending();
    });
    drainLoop(600ms); // past both timeouts
    EXPECT_EQ(pending->calls, 0);
    EXPECT_EQ(left, 0u);
    // The resolver still works after a cancel.
    auto outcome = wait(*resolve(kName, 300ms), 5s);
    EXPECT_FALSE(outcome.result.ok());
}

TEST_F(MdnsResolverTest, DestroyedFromInsideDone) {
    ASSERT_EQ(startResponder("answer"), "");
    auto unknown = resolve("unknown-host.local", 500ms);
    // The last owner lets go inside the first done: the other resolution is dropped silently.
    auto known = resolve(kName, 3000ms, [this] { resolver_.reset(); });
    auto outcome = wait(*known, 5s);
    ASSERT_TRUE(outcome.result.ok()) << outcome.result.error().message;
    drainLoop(1000ms);
    EXPECT_EQ(known->calls, 1);
    EXPECT_EQ(unknown->calls, 0);
    bool gone = false;
    loop_->invoke([&] { gone = resolver_ == nullptr; });
    EXPECT_TRUE(gone);
}

// What a browser peer looks like: its host candidate is "<uuid>.local" (RFC 8828). An agent in
// namespace a resolves it through the responder in namespace b and connects to b's agent; with
// no responder the candidate is skipped with the reason.
class MdnsAgentTest : public MdnsResolverTest {
protected:
    struct Side {
        std::shared_ptr<EventLoop> loop;
        test::Peer peer;
    };
    void makeSide(Side& side, const std::string& ns, const std::string& address, Role role) {
        auto loop = EventLoop::createInNetworkNamespace(ns, "agent-" + ns.substr(ns.size() - 1));
        ASSERT_TRUE(loop.ok()) << loop.error().message;
        side.loop = *loop;
        AgentConfig config;
        config.role = role;
        config.interfaces = {address};
        config.ipv6 = false;
        auto agent = Agent::create(config, side.peer.events->callbacks(), side.loop);
        ASSERT_TRUE(agent.ok()) << agent.error().message;
        side.peer.agent = std::move(*agent);
        side.peer.stream = side.peer.agent->addStream(1).value();
    }
    // Gathers both, hands a the description of b with b's host address renamed kName.
    void exchange(Side& a, Side& b) {
        for (Side* side : {&a, &b}) {
            ASSERT_TRUE(side->peer.agent->gather(side->peer.stream));
            ASSERT_TRUE(
                side->peer.events->waitFor([&] { return side->peer.events->gatheringDone; }));
        }
        auto da = a.peer.agent->localDescription(a.peer.stream).value();
        auto db = b.peer.agent->localDescription(b.peer.stream).value();
        for (auto& c : db.candidates) {
            if (c.address == kAddressB) {
                c.address = kName;
            }
        }
        ASSERT_TRUE(a.peer.agent->setRemoteDescription(a.peer.stream, db));
        ASSERT_TRUE(b.peer.agent->setRemoteDescription(b.peer.stream, da));
    }
    void TearDown() override {
        for (Side* side : {&a_, &b_}) {
            side->peer.agent.reset();
            side->loop.reset();
        }
        MdnsResolverTest::TearDown();
    }
    Side a_, b_;
};

TEST_F(MdnsAgentTest, AgentResolvesABrowsersMdnsHostCandidateAndConnects) {
    ASSERT_EQ(startResponder("answer"), "");
    makeSide(a_, nsA_, kAddressA, Role::Controlling);
    makeSide(b_, nsB_, kAddressB, Role::Controlled);
    exchange(a_, b_);
    ASSERT_TRUE(a_.peer.events->waitConnected(10s)) << responder_.output();
    ASSERT_TRUE(b_.peer.events->waitConnected(10s));
    std::lock_guard lock(a_.peer.events->mutex);
    EXPECT_EQ(a_.peer.events->pair->remote.address, kAddressB);
    EXPECT_TRUE(a_.peer.events->skipped.empty());
}

TEST_F(MdnsAgentTest, AnUnresolvableMdnsCandidateIsSkippedWithTheReason) {
    ASSERT_EQ(startResponder("silent"), "");
    makeSide(a_, nsA_, kAddressA, Role::Controlling);
    makeSide(b_, nsB_, kAddressB, Role::Controlled);
    exchange(a_, b_);
    ASSERT_TRUE(a_.peer.events->waitFor([&] { return !a_.peer.events->skipped.empty(); }, 10s));
    std::lock_guard lock(a_.peer.events->mutex);
    EXPECT_THAT(a_.peer.events->skipped.front().line, HasSubstr(kName));
    EXPECT_THAT(a_.peer.events->skipped.front().reason, HasSubstr("no answer from an mDNS"));
}

} // namespace
} // namespace icepunch::impl
