// The NAT matrix: two agents in network namespaces behind emulated routers (tests/natlab/lab.sh),
// one coturn as STUN/TURN server, every ordered pair of router kinds plus double NAT, same NAT and
// 20 % loss. Each cell checks that both sides connect, that the path (direct or relay) is the one
// the router kinds call for, and that data flows; it appends one JSON line per cell to
// $ICEPUNCH_NATLAB_OUT (tests/natlab/render_grid.py turns that into the grid).
//
// Needs root and network namespaces: otherwise every test is SKIPPED and the exe exits 77.
// Env: ICEPUNCH_NATLAB_LAB (path of lab.sh), ICEPUNCH_NATLAB_OUT (JSONL, appended),
// ICEPUNCH_NATLAB_STUN ("alt", the default: STUN at the server's second address 203.0.113.11:3479;
// "same": 203.0.113.10:3478, the TURN address; see results/README.md for the difference),
// ICEPUNCH_NATLAB_SETTLE_MS (how long a cell waits for libnice to switch to the expected path
// after connecting over another one, default 3000), ICEPUNCH_NATLAB_WAIT_GATHER=1 (also wait for
// gathering done, to measure it), ICEPUNCH_NATLAB_NO_VERIFY=1 (skip proving the router kinds, for
// quick local runs only).
#include "agent_harness.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#ifndef NATLAB_LAB_SH
#error "NATLAB_LAB_SH must be defined (path of tests/natlab/lab.sh)"
#endif
#ifndef NATLAB_DEFAULT_OUT
#define NATLAB_DEFAULT_OUT "natlab_cells.jsonl"
#endif

namespace icepunch::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string g_skipReason; // set when the lab cannot run here: every test skips, exit 77
std::string g_runId;      // one id per process run, in every JSON line

std::string envOr(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

std::string labScript() {
    return envOr("ICEPUNCH_NATLAB_LAB", NATLAB_LAB_SH);
}

struct CommandResult {
    int rc = -1;
    std::string output; // stdout and stderr
};

CommandResult runCommand(const std::string& command) {
    CommandResult result;
    FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
    if (!pipe) {
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

std::string lab(const std::string& args) {
    return "'" + labScript() + "' " + args;
}

// "ready k=v k=v ..." -> map
std::map<std::string, std::string> parseReady(const std::string& output) {
    std::map<std::string, std::string> kv;
    std::istringstream lines(output);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind("ready ", 0) != 0) {
            continue;
        }
        std::istringstream words(line.substr(6));
        std::string word;
        while (words >> word) {
            auto eq = word.find('=');
            if (eq != std::string::npos) {
                kv[word.substr(0, eq)] = word.substr(eq + 1);
            }
        }
    }
    return kv;
}

// A lab that is always torn down (lab.sh down is idempotent).
class Lab {
public:
    Lab(std::string prefix, std::string topology)
        : prefix_(std::move(prefix)), topology_(std::move(topology)) {}
    ~Lab() { down(); }
    Lab(const Lab&) = delete;
    Lab& operator=(const Lab&) = delete;

    // rc 0: ready; 77: namespaces unavailable; other: failure (output says why).
    CommandResult up() {
        // A leftover lab with this prefix (a killed earlier run) would make up fail.
        runCommand(lab("down --prefix " + prefix_));
        started_ = true;
        auto r = runCommand(lab("up " + topology_ + " --prefix " + prefix_));
        ready_ = parseReady(r.output);
        if (r.rc == 0 && ready_.empty()) {
            r.rc = 1;
            r.output += "\n(no ready line)";
        }
        return r;
    }
    void down() {
        if (started_) {
            runCommand(lab("down --prefix " + prefix_));
            started_ = false;
        }
    }
    const std::string& prefix() const { return prefix_; }
    std::string get(const std::string& key) const {
        auto it = ready_.find(key);
        return it == ready_.end() ? std::string() : it->second;
    }

private:
    std::string prefix_;
    std::string topology_;
    bool started_ = false;
    std::map<std::string, std::string> ready_;
};

std::string pidTag() {
    return std::to_string(::getpid() % 100000);
}

// Proves the router kinds before any cell runs: three labs covering all five kinds, each checked
// with lab.sh verify (turnutils_natdiscovery). A mismatch is a fatal failure of the global set-up,
// so gtest runs no cell and the suite fails.
class KindsProved : public ::testing::Environment {
public:
    void SetUp() override {
        if (!g_skipReason.empty()) {
            return;
        }
        const std::vector<std::string> topologies = {"full restricted", "port symmetric",
                                                     "udpblock full"};
        if (envOr("ICEPUNCH_NATLAB_NO_VERIFY", "") == "1") {
            std::cout << "natlab: router kinds NOT verified (ICEPUNCH_NATLAB_NO_VERIFY=1)\n";
            return;
        }
        std::vector<std::unique_ptr<Lab>> labs;
        for (size_t i = 0; i < topologies.size(); ++i) {
            labs.push_back(
                std::make_unique<Lab>("v" + pidTag() + "k" + std::to_string(i), topologies[i]));
            auto r = labs.back()->up();
            if (r.rc == 77) {
                g_skipReason = "lab.sh exited 77: " + r.output;
                return;
            }
            ASSERT_EQ(r.rc, 0) << "lab.sh up " << topologies[i] << " failed:\n" << r.output;
        }
        auto started = Clock::now();
        std::vector<std::future<CommandResult>> verifies;
        for (auto& l : labs) {
            verifies.push_back(std::async(std::launch::async, [p = l->prefix()] {
                return runCommand(lab("verify --prefix " + p));
            }));
        }
        bool allOk = true;
        for (size_t i = 0; i < verifies.size(); ++i) {
            auto r = verifies[i].get();
            std::cout << "natlab verify (" << topologies[i] << "):\n" << r.output;
            if (r.rc != 0) {
                allOk = false;
                ADD_FAILURE() << "lab.sh verify for '" << topologies[i] << "' exited " << r.rc
                              << ": the router kinds are not what they claim to be:\n"
                              << r.output;
            }
        }
        std::cout
            << "natlab: router kinds verified in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()
            << " ms\n";
        ASSERT_TRUE(allOk) << "router kind verification failed: no cell runs";
    }
};

// ---------------------------------------------------------------------------------- signalling
// Carries candidates from one agent to the other on its own thread, as a signalling channel
// would. Needed because each agent has its own loop: forwarding inside a callback would block
// one loop thread on the other's (and the other way round: a deadlock).
class Channel {
public:
    Channel() : thread_([this] { run(); }) {}
    ~Channel() { close(); }
    Channel(const Channel&) = delete;
    Channel& operator=(const Channel&) = delete;

    void post(std::function<void()> fn) {
        {
            std::lock_guard lock(mutex_);
            if (closed_) {
                return;
            }
            queue_.push_back(std::move(fn));
        }
        cv_.notify_one();
    }
    void close() {
        {
            std::lock_guard lock(mutex_);
            closed_ = true;
        }
        cv_.notify_one();
        if (thread_.joinable()) {
            thread_.join();
        }
    }

private:
    void run() {
        for (;;) {
            std::function<void()> fn;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [this] { return closed_ || !queue_.empty(); });
                if (closed_) {
                    return;
                }
                fn = std::move(queue_.front());
                queue_.pop_front();
            }
            fn();
        }
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> queue_;
    bool closed_ = false;
    std::thread thread_;
};

// ----------------------------------------------------------------------------------- the cells
enum class Path { Direct, Relay };

std::string_view name(Path p) {
    return p == Path::Direct ? "direct" : "relay";
}

struct Cell {
    std::string a; // kind of A's router
    std::string b;
    std::string extra; // "", "double", "samenat", "loss20"

    std::string topology() const {
        if (extra == "double") {
            return "double " + b;
        }
        if (extra == "samenat") {
            return "samenat";
        }
        if (extra == "loss20") {
            return a + " " + b + " --loss 20";
        }
        return a + " " + b;
    }
    Path expected() const {
        auto relayNeeded = [](const std::string& x, const std::string& y) {
            return x == "symmetric" && (y == "port" || y == "symmetric");
        };
        if (a == "udpblock" || b == "udpblock" || relayNeeded(a, b) || relayNeeded(b, a)) {
            return Path::Relay;
        }
        return Path::Direct;
    }
    std::string testName() const {
        if (extra == "samenat") {
            return "samenat";
        }
        if (extra == "double") {
            return "double_" + b;
        }
        return a + "_" + b + (extra.empty() ? "" : "_" + extra);
    }
};

std::vector<Cell> allCells() {
    const std::vector<std::string> kinds = {"full", "restricted", "port", "symmetric", "udpblock"};
    std::vector<Cell> cells;
    for (const auto& a : kinds) {
        for (const auto& b : kinds) {
            cells.push_back({a, b, ""});
        }
    }
    cells.push_back({"port", "port", "double"});
    cells.push_back({"port", "port", "samenat"});
    cells.push_back({"port", "port", "loss20"});
    return cells;
}

std::string jsonEscape(const std::string& s) {
    std::string out;
    for (char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                out += ' ';
            } else {
                out += c;
            }
        }
    }
    return out;
}

// What one cell measured, written as one JSON line whatever happened.
struct CellReport {
    const Cell* cell = nullptr;
    std::optional<Path> path;
    std::string localType = "none", remoteType = "none"; // A's view of the selected pair
    std::string bLocalType = "none";
    std::string relayVia;       // the relay's TURN transport (UDP, TCP, TLS) when relayed
    std::string relayA, relayB; // each side's own relay transport, "" when it does not relay
    std::string note;
    long msA = -1, msB = -1;
    long gatherA = -1, gatherB = -1; // ms from gather start to gathering done
    uint64_t sentAB = 0, recvAB = 0, sentBA = 0, recvBA = 0;
    long cellMs = 0, upMs = 0, xferMs = 0;
    long msSettled = -1; // from A's start to the switch to the expected path, when it came late
    long msAgreed = -1;  // loss cell: from A's start to both peers on the same kind of path
    bool ok = false;
    std::string error;

    void write() const {
        std::ostringstream j;
        j << "{\"a\":\"" << cell->a << "\",\"b\":\"" << cell->b << "\",\"extra\":\"" << cell->extra
          << "\",\"path\":\"" << (path ? name(*path) : "none") << "\",\"local_type\":\""
          << localType << "\",\"remote_type\":\"" << remoteType << "\",\"b_local_type\":\""
          << bLocalType << "\",\"relay_via\":\"" << relayVia << "\",\"relay_a\":\"" << relayA
          << "\",\"relay_b\":\"" << relayB << "\",\"ms_a\":" << msA << ",\"ms_b\":" << msB
          << ",\"ms_settled\":" << msSettled << ",\"ms_agreed\":" << msAgreed
          << ",\"gather_ms_a\":" << gatherA << ",\"gather_ms_b\":" << gatherB
          << ",\"sent_ab\":" << sentAB << ",\"recv_ab\":" << recvAB << ",\"sent_ba\":" << sentBA
          << ",\"recv_ba\":" << recvBA << ",\"up_ms\":" << upMs << ",\"xfer_ms\":" << xferMs
          << ",\"cell_ms\":" << cellMs << ",\"stun\":\"" << envOr("ICEPUNCH_NATLAB_STUN", "alt")
          << "\",\"run\":\"" << g_runId << "\",\"expected\":\"" << name(cell->expected())
          << "\",\"ok\":" << (ok ? "true" : "false") << ",\"error\":\"" << jsonEscape(error)
          << "\",\"note\":\"" << jsonEscape(note) << "\"}";
        std::string path = envOr("ICEPUNCH_NATLAB_OUT", NATLAB_DEFAULT_OUT);
        std::ofstream out(path, std::ios::app);
        out << j.str() << "\n";
        std::cout << "natlab cell " << j.str() << "\n";
    }
};

AgentConfig labConfig(const Lab& l, Role role) {
    AgentConfig config;
    config.role = role;
    config.ipv6 = false; // the lab namespaces have IPv6 disabled
    std::string stun =
        envOr("ICEPUNCH_NATLAB_STUN", "alt") == "same" ? l.get("stun") : l.get("stun_alt");
    config.stunServers.push_back(ServerUri::parse("stun:" + stun).value());
    auto turn = [&](const std::string& uri) {
        TurnServer t;
        t.uri = ServerUri::parse(uri).value();
        t.username = l.get("turn_user");
        t.password = l.get("turn_pass");
        t.tls.caFile = l.get("ca");
        t.tls.serverName = "turn.lab.test";
        return t;
    };
    config.turnServers.push_back(turn("turn:" + l.get("turn")));
    config.turnServers.push_back(turn("turn:" + l.get("turn") + "?transport=tcp"));
    config.turnServers.push_back(turn("turns:" + l.get("turns")));
    return config;
}

// Sends count datagrams, at most `window` outstanding. With lossy=true a lost datagram never
// frees its window slot, so the window wait gives up after a short while and sending goes on.
void pump(Peer& from, Peer& to, int count, size_t size, size_t window, bool lossy, uint64_t& sent,
          uint64_t& received, std::chrono::milliseconds timeout) {
    uint64_t base;
    {
        std::lock_guard lock(to.events->mutex);
        base = to.events->received;
    }
    std::string payload(size, 'x');
    auto deadline = Clock::now() + timeout;
    auto remaining = [&] {
        return std::max(
            std::chrono::milliseconds(0),
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    };
    uint64_t writtenOff = 0; // lossy: outstanding datagrams given up on, their slots reused
    for (int i = 0; i < count; ++i) {
        std::memcpy(payload.data(), &i, std::min(sizeof i, size));
        auto hasRoom = [&] {
            return to.events->received - base + writtenOff + window > sent;
        };
        bool roomy = to.events->waitFor(
            hasRoom, lossy ? std::min(remaining(), std::chrono::milliseconds(20)) : remaining());
        if (!roomy) {
            if (!lossy || remaining().count() == 0) {
                break;
            }
            std::lock_guard lock(to.events->mutex);
            writtenOff = sent - (to.events->received - base);
        }
        bool ok = static_cast<bool>(from.agent->send(from.stream, 1, payload));
        // Under loss the selected pair can be briefly unusable (e.g. renominated): keep trying
        // until the time is up; a connection that stays dead still ends with no data.
        while (!ok && lossy && remaining().count() > 0) {
            to.events->waitFor([] { return false; },
                               std::min(remaining(), std::chrono::milliseconds(20)));
            ok = static_cast<bool>(from.agent->send(from.stream, 1, payload));
        }
        if (!ok) {
            break;
        }
        ++sent;
    }
    to.events->waitFor([&] { return to.events->received - base >= sent; },
                       lossy ? std::min(remaining(), std::chrono::milliseconds(500)) : remaining());
    std::lock_guard lock(to.events->mutex);
    received = to.events->received - base;
}

// Which TURN server a relayed candidate came from, read from its priority as libnice 0.1.21
// computes it (agent/candidate.c): type preference (bits 24-31) is 30 for a TURN/UDP relay and 20
// for TURN/TCP; the local preference's bits 6-8 (priority bits 14-16) are the TURN server's
// position in the component's relay list, which is the order of AgentConfig::turnServers here
// (0 turn: UDP, 1 turn:?transport=tcp, 2 turns: through the TLS bridge). "" if not relayed.
std::string relayTransport(const Candidate& c) {
    if (c.type != CandidateType::Relayed) {
        return "";
    }
    unsigned typePreference = c.priority >> 24;
    unsigned turnIndex = (c.priority >> 14) & 7;
    if (typePreference == 30 && turnIndex == 0) {
        return "UDP";
    }
    if (typePreference == 20 && turnIndex == 1) {
        return "TCP";
    }
    if (typePreference == 20 && turnIndex == 2) {
        return "TLS";
    }
    return "type" + std::to_string(typePreference) + "/server" + std::to_string(turnIndex);
}

class Matrix : public ::testing::TestWithParam<Cell> {};

TEST_P(Matrix, Connects) {
    if (!g_skipReason.empty()) {
        GTEST_SKIP() << g_skipReason;
    }
    const Cell& cell = GetParam();
    auto cellStart = Clock::now();
    CellReport report;
    report.cell = &cell;
    // Written whatever happens below (also on ASSERT failures).
    struct WriteOnExit {
        CellReport& r;
        Clock::time_point start;
        ~WriteOnExit() {
            r.cellMs =
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
            r.write();
        }
    } writeOnExit{report, cellStart};
    auto fail = [&](const std::string& why) {
        report.error += (report.error.empty() ? "" : "; ") + why;
    };

    static int counter = 0;
    Lab l("n" + pidTag() + "c" + std::to_string(counter++), cell.topology());
    auto up = l.up();
    report.upMs =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - cellStart).count();
    if (up.rc == 77) {
        fail("skipped: " + up.output);
        g_skipReason = "lab.sh exited 77: " + up.output;
        GTEST_SKIP() << up.output;
    }
    if (up.rc != 0) {
        fail("lab.sh up failed");
    }
    ASSERT_EQ(up.rc, 0) << "lab.sh up " << cell.topology() << ":\n" << up.output;

    // Declared in teardown order, last first: channels, agents, loops, then the lab.
    auto loopA = EventLoop::createInNetworkNamespace(l.get("a"), "natlab-a");
    auto loopB = EventLoop::createInNetworkNamespace(l.get("b"), "natlab-b");
    ASSERT_TRUE(loopA) << loopA.error().message;
    ASSERT_TRUE(loopB) << loopB.error().message;
    Clock::time_point doneA{}, doneB{}; // gathering done, written on the loop threads
    Peer a, b;
    struct Rig {
        Peer &a, &b;
        Channel toA, toB;
        ~Rig() {
            toA.close();
            toB.close();
            a.agent.reset();
            b.agent.reset();
        }
    } rig{a, b, {}, {}};

    auto make = [&](Peer& p, Role role, std::shared_ptr<EventLoop> loop) {
        auto agent = Agent::create(labConfig(l, role), p.events->callbacks(), std::move(loop));
        if (!agent) {
            ADD_FAILURE() << "Agent::create: " << agent.error().message;
            return false;
        }
        p.agent = std::move(*agent);
        auto stream = p.agent->addStream(1);
        if (!stream) {
            ADD_FAILURE() << "addStream: " << stream.error().message;
            return false;
        }
        p.stream = *stream;
        return true;
    };
    ASSERT_TRUE(make(a, Role::Controlling, *loopA));
    ASSERT_TRUE(make(b, Role::Controlled, *loopB));

    // Credentials first, then candidates trickle through the channels as they are gathered.
    auto credentials = [](Peer& p) {
        auto d = p.agent->localDescription(p.stream).value();
        d.candidates.clear();
        d.endOfCandidates = false;
        return d;
    };
    ASSERT_TRUE(b.agent->setRemoteDescription(b.stream, credentials(a)));
    ASSERT_TRUE(a.agent->setRemoteDescription(a.stream, credentials(b)));
    auto wire = [](Peer& self, Peer& other, Channel& channel, Clock::time_point& done) {
        Peer* peer = &other;
        Channel* ch = &channel;
        Recorder* events = self.events.get();
        self.events->onCandidate = [peer, ch](StreamId, const Candidate& c) {
            ch->post([peer, c] { peer->agent->addRemoteCandidate(peer->stream, c); });
        };
        self.events->onGatheringDone = [peer, ch, events, &done](StreamId) {
            {
                std::lock_guard lock(events->mutex);
                done = Clock::now();
            }
            events->changed.notify_all();
            ch->post([peer] { peer->agent->endOfRemoteCandidates(peer->stream); });
        };
    };
    wire(a, b, rig.toB, doneA);
    wire(b, a, rig.toA, doneB);

    // Both start at the same time, each from its own thread.
    Clock::time_point startA{}, startB{};
    Status gatherA, gatherB;
    {
        std::promise<void> go;
        auto goFuture = go.get_future().share();
        std::thread ta([&] {
            goFuture.wait();
            startA = Clock::now();
            gatherA = a.agent->gather(a.stream);
        });
        std::thread tb([&] {
            goFuture.wait();
            startB = Clock::now();
            gatherB = b.agent->gather(b.stream);
        });
        go.set_value();
        ta.join();
        tb.join();
    }
    ASSERT_TRUE(gatherA) << gatherA.error().message;
    ASSERT_TRUE(gatherB) << gatherB.error().message;

    auto deadline = Clock::now() + std::chrono::seconds(15);
    auto left = [&] {
        return std::max(
            std::chrono::milliseconds(1),
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    };
    bool connectedA = a.events->waitConnected(left());
    bool connectedB = b.events->waitConnected(left());
    auto msSince = [](Clock::time_point from, Clock::time_point to) {
        return static_cast<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(to - from).count());
    };
    std::optional<CandidatePair> pairA, pairB;
    {
        std::lock_guard lock(a.events->mutex);
        if (connectedA) {
            report.msA = msSince(startA, a.events->connectedAt);
        }
        pairA = a.events->pair;
        if (doneA != Clock::time_point{}) {
            report.gatherA = msSince(startA, doneA);
        }
    }
    {
        std::lock_guard lock(b.events->mutex);
        if (connectedB) {
            report.msB = msSince(startB, b.events->connectedAt);
        }
        pairB = b.events->pair;
        if (doneB != Clock::time_point{}) {
            report.gatherB = msSince(startB, doneB);
        }
    }
    if (pairA) {
        report.localType = std::string(toString(pairA->local.type));
        report.remoteType = std::string(toString(pairA->remote.type));
        report.path = pairA->isRelayed() ? Path::Relay : Path::Direct;
    }
    if (pairB) {
        report.bLocalType = std::string(toString(pairB->local.type));
    }
    if (!connectedA || !connectedB) {
        fail(std::string("not connected within 15 s:") + (connectedA ? "" : " A") +
             (connectedB ? "" : " B"));
    }
    ASSERT_TRUE(connectedA && connectedB)
        << "A " << (connectedA ? "connected" : "NOT connected") << ", B "
        << (connectedB ? "connected" : "NOT connected") << " within 15 s";
    ASSERT_TRUE(pairA && pairB);

    bool lossy = cell.extra == "loss20";
    auto xferStart = Clock::now();
    pump(a, b, 1000, 200, 32, lossy, report.sentAB, report.recvAB, std::chrono::seconds(10));
    pump(b, a, 1000, 200, 32, lossy, report.sentBA, report.recvBA, std::chrono::seconds(10));
    report.xferMs =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - xferStart).count();

    // The selected pair may be upgraded after Connected; judge the pair in use now.
    // A lower-priority pair can win the nomination race (e.g. relay -> srflx into a restricted
    // cone, which lets the TURN server's address in, before the direct punch's retransmission);
    // libnice then switches to the better pair when its check succeeds. Give it up to
    // ICEPUNCH_NATLAB_SETTLE_MS (default 3000) to reach the expected path; record when it did.
    long settle = std::atol(envOr("ICEPUNCH_NATLAB_SETTLE_MS", "3000").c_str());
    if (!lossy && settle > 0) {
        bool wantRelay = cell.expected() == Path::Relay;
        bool already;
        {
            std::lock_guard lock(a.events->mutex);
            already = a.events->pair && a.events->pair->isRelayed() == wantRelay;
        }
        if (!already) {
            bool settled = a.events->waitFor(
                [&] { return a.events->pair && a.events->pair->isRelayed() == wantRelay; },
                std::chrono::milliseconds(settle));
            if (settled) {
                report.msSettled = msSince(startA, Clock::now());
                // B follows when the nominated check reaches it.
                b.events->waitFor(
                    [&] { return b.events->pair && b.events->pair->isRelayed() == wantRelay; },
                    std::chrono::milliseconds(1000));
            }
        }
    }
    if (lossy) {
        // Aggressive nomination under loss: B selects a pair only once its own check on it has
        // succeeded and A's USE-CANDIDATE has reached it, so B can stay on a relay pair for a
        // while after A has moved to the direct one. A's consent checks (every ~5 s) carry
        // USE-CANDIDATE and bring B over; wait for both to use the same kind of path.
        auto relayed = [](Peer& p) -> std::optional<bool> {
            std::lock_guard lock(p.events->mutex);
            if (!p.events->pair) {
                return std::nullopt;
            }
            return p.events->pair->isRelayed();
        };
        auto agreeBy = Clock::now() + std::chrono::seconds(8);
        bool agreed = relayed(a) == relayed(b);
        while (!agreed && Clock::now() < agreeBy) {
            // Wake on B's change to A's kind of path; look at A again every 100 ms.
            auto target = relayed(a);
            b.events->waitFor(
                [&] { return target && b.events->pair && b.events->pair->isRelayed() == *target; },
                std::chrono::milliseconds(100));
            agreed = relayed(a) == relayed(b);
        }
        if (agreed) {
            report.msAgreed = msSince(startA, Clock::now());
        }
    }
    {
        std::lock_guard lock(a.events->mutex);
        pairA = a.events->pair;
    }
    {
        std::lock_guard lock(b.events->mutex);
        pairB = b.events->pair;
    }
    if (envOr("ICEPUNCH_NATLAB_WAIT_GATHER", "") == "1") {
        // Investigation aid: also measure when gathering ends (it does not gate Connected).
        a.events->waitFor([&] { return doneA != Clock::time_point{}; }, std::chrono::seconds(8));
        b.events->waitFor([&] { return doneB != Clock::time_point{}; }, std::chrono::seconds(8));
    }
    {
        std::lock_guard lock(a.events->mutex);
        if (doneA != Clock::time_point{}) {
            report.gatherA = msSince(startA, doneA);
        }
    }
    {
        std::lock_guard lock(b.events->mutex);
        if (doneB != Clock::time_point{}) {
            report.gatherB = msSince(startB, doneB);
        }
    }
    std::string typesAtConnect = report.localType + "/" + report.remoteType;
    report.localType = std::string(toString(pairA->local.type));
    report.remoteType = std::string(toString(pairA->remote.type));
    report.bLocalType = std::string(toString(pairB->local.type));
    report.path = pairA->isRelayed() ? Path::Relay : Path::Direct;
    if (typesAtConnect != report.localType + "/" + report.remoteType) {
        report.note += "pair changed after connected: " + typesAtConnect + " -> " +
                       report.localType + "/" + report.remoteType + "; ";
    }

    bool good = true;
    auto check = [&](bool condition, const std::string& what) {
        EXPECT_TRUE(condition) << what;
        if (!condition) {
            fail(what);
            good = false;
        }
    };
    std::string pairs = "A " + pairA->local.toString() + " -> " + pairA->remote.toString() +
                        ", B " + pairB->local.toString() + " -> " + pairB->remote.toString();
    if (!lossy) {
        check(pairA->isRelayed() == pairB->isRelayed(), "A and B disagree on the path: " + pairs);
    } else if (pairA->isRelayed() != pairB->isRelayed()) {
        // Seen about once in 40 runs: the direct check that would bring the second peer over
        // keeps being lost. Data still flows both ways (checked below), one way relayed.
        report.note +=
            "A and B still on different kinds of path 8 s after the transfer: " + pairs + "; ";
    }
    std::string pathText = "path " + std::string(name(*report.path)) + ", expected " +
                           std::string(name(cell.expected())) + " (A: " + pairA->local.toString() +
                           " -> " + pairA->remote.toString() + ")";
    if (lossy) {
        // Under random loss a lost direct check lets a relay pair (TURN over TCP/TLS has no loss
        // on its first leg) succeed first, and aggressive nomination takes it: either path is
        // fine here, the cell only has to connect and carry data.
        if (*report.path != cell.expected()) {
            report.note += pathText + ": accepted under loss; ";
        }
    } else {
        check(*report.path == cell.expected(), pathText);
    }
    if (cell.a == "udpblock") {
        check(pairA->local.type == CandidateType::Relayed,
              "udpblock side A does not use its relay: " + pairA->local.toString());
    }
    if (cell.b == "udpblock") {
        check(pairB->local.type == CandidateType::Relayed,
              "udpblock side B does not use its relay: " + pairB->local.toString());
    }
    if (cell.extra == "samenat") {
        check(pairA->local.type == CandidateType::Host && pairA->remote.type == CandidateType::Host,
              "same NAT should connect host to host, got " + report.localType + "/" +
                  report.remoteType);
    }
    // The relay in use: the relaying side's own view of its candidate.
    report.relayA = relayTransport(pairA->local);
    report.relayB = relayTransport(pairB->local);
    report.relayVia = cell.b == "udpblock" && cell.a != "udpblock"
                          ? report.relayB
                          : (report.relayA.empty() ? report.relayB : report.relayA);
    if (cell.a == "udpblock") {
        auto via = relayTransport(pairA->local);
        check(via == "TCP" || via == "TLS", "udpblock side A relays over " + via + ", not TCP/TLS");
    }
    if (cell.b == "udpblock") {
        auto via = relayTransport(pairB->local);
        check(via == "TCP" || via == "TLS", "udpblock side B relays over " + via + ", not TCP/TLS");
    }
    if (lossy) {
        // ~20 % per router per direction: most datagrams still arrive.
        check(report.recvAB > 0 && report.recvBA > 0, "no data at all through the lossy path");
    } else {
        check(report.recvAB == 1000 && report.sentAB == 1000,
              "A->B: " + std::to_string(report.recvAB) + " of " + std::to_string(report.sentAB) +
                  " sent (1000 wanted) arrived");
        check(report.recvBA == 1000 && report.sentBA == 1000,
              "B->A: " + std::to_string(report.recvBA) + " of " + std::to_string(report.sentBA) +
                  " sent (1000 wanted) arrived");
    }
    report.ok = good;
}

INSTANTIATE_TEST_SUITE_P(Cells, Matrix, ::testing::ValuesIn(allCells()),
                         [](const ::testing::TestParamInfo<Cell>& info) {
                             return info.param.testName();
                         });

} // namespace
} // namespace icepunch::test

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    using icepunch::test::g_skipReason;
    if (::geteuid() != 0) {
        g_skipReason = "natlab needs root (network namespaces); uid " + std::to_string(::geteuid());
    }
    {
        char buf[32];
        std::time_t now = std::time(nullptr);
        std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
        icepunch::test::g_runId = buf;
    }
    ::testing::AddGlobalTestEnvironment(new icepunch::test::KindsProved);
    int rc = RUN_ALL_TESTS();
    if (!g_skipReason.empty()) {
        std::cout << "natlab: SKIPPED: " << g_skipReason << "\n";
        return rc == 0 ? 77 : rc;
    }
    return rc;
}
