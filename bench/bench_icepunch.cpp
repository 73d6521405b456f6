// icepunch benchmark driver: icepunch next to raw libnice (bench/baseline_libnice.c, linked in)
// and raw UDP sockets, interleaved in one process. Prints one JSON object per line per result.
//
//   bench_icepunch connect --scenario loopback|mixed|lab --runs N [lab options]
//   bench_icepunch datapath --seconds S --rounds R [--only udp|libnice|icepunch]
//   bench_icepunch scale --pairs N --idle S [--batch B]
//   bench_icepunch scale-libnice --pairs N --idle S   (the same on raw libnice, one loop)
//   bench_icepunch scale-floor --pairs N --idle S     (consent traffic on raw sockets)
//   bench_icepunch relay --seconds S --pings K --runs N
// Common: --no-upnp (raw libnice only; where its SSDP multicast would leave loopback).
// Lab options: --ns-a NS --ns-b NS --stun IP:PORT --turn IP:PORT [--turn-tcp] --user U --pass P
//              --label NAME
// Exit status: 0, or 1 when a benchmark broke (nothing connected, data did not flow); never for a
// slow timing.

#include "baseline_libnice.h"

#include <coturn_process.hpp>
#include <icepunch/icepunch.hpp>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <queue>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace icepunch;
using namespace std::chrono_literals;

namespace {

int g_exit = 0;

void broke(const std::string& what) {
    std::fprintf(stderr, "bench: BROKEN: %s\n", what.c_str());
    g_exit = 1;
}

// ------------------------------------------------------------------ output

std::string jsonEscape(const std::string& s) {
    std::string out;
    for (char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (static_cast<unsigned char>(c) < 0x20) {
            out += ' ';
        } else {
            out += c;
        }
    }
    return out;
}

class Json {
public:
    Json& add(const std::string& k, const std::string& v) {
        return raw(k, "\"" + jsonEscape(v) + "\"");
    }
    Json& add(const std::string& k, const char* v) { return add(k, std::string(v)); }
    Json& add(const std::string& k, double v) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.6g", v);
        return raw(k, buf);
    }
    Json& add(const std::string& k, int v) { return raw(k, std::to_string(v)); }
    Json& add(const std::string& k, long v) { return raw(k, std::to_string(v)); }
    Json& add(const std::string& k, uint64_t v) { return raw(k, std::to_string(v)); }
    Json& add(const std::string& k, bool v) { return raw(k, v ? "true" : "false"); }
    Json& raw(const std::string& k, const std::string& v) {
        body_ += (body_.empty() ? "" : ",") + ("\"" + k + "\":") + v;
        return *this;
    }
    std::string str() const { return "{" + body_ + "}"; }
    void print() const {
        std::printf("%s\n", str().c_str());
        std::fflush(stdout);
    }

private:
    std::string body_;
};

struct Summary {
    double median = -1, p95 = -1, min = -1, max = -1;
};

Summary summarize(std::vector<double> v) {
    Summary s;
    if (v.empty()) {
        return s;
    }
    std::sort(v.begin(), v.end());
    auto rank = [&](double q) {
        size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size())));
        return v[std::min(v.size() - 1, i == 0 ? 0 : i - 1)];
    };
    s.median = v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    s.p95 = rank(0.95);
    s.min = v.front();
    s.max = v.back();
    return s;
}

std::string summaryJson(const Summary& s) {
    return Json()
        .add("median", s.median)
        .add("p95", s.p95)
        .add("min", s.min)
        .add("max", s.max)
        .str();
}

double nowMs() {
    return bl_now_ms();
}

// ------------------------------------------------------------------ process stats

long statusKb(const char* key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    size_t n = std::strlen(key);
    while (std::getline(in, line)) {
        if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':') {
            return std::atol(line.c_str() + n + 1);
        }
    }
    return -1;
}

int countDir(const char* path) {
    int n = 0;
    if (DIR* dir = opendir(path)) {
        while (dirent* e = readdir(dir)) {
            if (e->d_name[0] != '.') {
                ++n;
            }
        }
        closedir(dir);
    }
    return n;
}

double cpuSeconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// ------------------------------------------------------------------ options

struct Options {
    std::string mode;
    std::string scenario = "loopback";
    std::string label;
    int runs = 5;
    int rounds = 3;
    int pairs = 20;
    int loops = 1; // scale: agents spread round-robin over this many event loops
    int batch = 250;
    int pings = 100;
    double seconds = 1.0;
    double idle = 10.0;
    double settle = 6.0; // scale: idle this long before measuring (consent starts 4-6 s in)
    double budget = 1e9; // scale: stop starting batches after this many seconds
    double timeout = 20.0;
    double readyWait = 2.0;
    int readyRuns = 1 << 30; // runs (from the first) that wait for READY
    bool noUpnp = false;
    std::string nsA, nsB, stun, turn, user, pass;
    bool turnTcp = false;
    std::string only; // datapath: run this contender alone (for perf)
};

std::pair<std::string, unsigned> hostPort(const std::string& s) {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) {
        return {s, 0};
    }
    return {s.substr(0, colon), static_cast<unsigned>(std::stoul(s.substr(colon + 1)))};
}

// ------------------------------------------------------------------ icepunch pair

struct Board {
    std::mutex mutex;
    std::condition_variable changed;
    std::atomic<int> connectedSides{0};
    std::atomic<int> failedSides{0};
};

struct Guard {
    std::atomic<bool> closing{false};
    std::atomic<int> inflight{0};
};

struct IceSide {
    std::shared_ptr<EventLoop> loop;
    std::unique_ptr<Agent> agent;
    StreamId stream = 0;
    std::atomic<uint64_t> received{0};
    std::atomic<double> connectedAt{0}, readyAt{0};
    std::atomic<bool> failed{false};
    std::atomic<bool> echo{false};
    std::function<void()> onReceive; // set before data flows
    std::mutex pairMutex;
    std::string pairText;
    bool relayed = false;
};

struct ConnectTimes {
    bool ok = false;
    double connectedMs = -1, readyMs = -1;
    bool relayed = false;
    std::string pair, error;
};

class IcePair {
public:
    IcePair(std::shared_ptr<Board> board) : board_(std::move(board)) {
        for (auto& s : sides_) {
            s = std::make_unique<IceSide>();
        }
    }
    ~IcePair() { close(); }

    // Creates both agents, exchanges credentials, gathers and trickles: like the test harness.
    Status start(AgentConfig a, AgentConfig b, std::shared_ptr<EventLoop> la,
                 std::shared_ptr<EventLoop> lb) {
        start_ = nowMs();
        AgentConfig configs[2] = {std::move(a), std::move(b)};
        sides_[0]->loop = std::move(la);
        sides_[1]->loop = std::move(lb);
        for (int i = 0; i < 2; ++i) {
            auto agent = Agent::create(configs[i], callbacks(i), sides_[i]->loop);
            if (!agent) {
                return agent.error();
            }
            sides_[i]->agent = std::move(*agent);
            auto stream = sides_[i]->agent->addStream(1);
            if (!stream) {
                return stream.error();
            }
            sides_[i]->stream = *stream;
        }
        for (int i = 0; i < 2; ++i) {
            auto d = sides_[i]->agent->localDescription(sides_[i]->stream);
            if (!d) {
                return d.error();
            }
            auto& other = *sides_[1 - i];
            if (auto s = other.agent->setRemoteDescription(other.stream, *d); !s) {
                return s;
            }
        }
        for (int i = 0; i < 2; ++i) {
            if (auto s = sides_[i]->agent->gather(sides_[i]->stream); !s) {
                return s;
            }
        }
        return {};
    }

    bool connected() const { return sides_[0]->connectedAt != 0 && sides_[1]->connectedAt != 0; }
    bool ready() const { return sides_[0]->readyAt != 0 && sides_[1]->readyAt != 0; }
    bool failed() const { return sides_[0]->failed || sides_[1]->failed; }

    ConnectTimes wait(double timeoutS, double readyWaitS) {
        ConnectTimes t;
        std::unique_lock lock(board_->mutex);
        auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(static_cast<long>(timeoutS * 1e6));
        if (!board_->changed.wait_until(lock, deadline, [&] { return connected() || failed(); }) ||
            failed()) {
            t.error = failed() ? "ICE failed" : "not connected in time";
            return t;
        }
        t.ok = true;
        t.connectedMs =
            std::max(sides_[0]->connectedAt.load(), sides_[1]->connectedAt.load()) - start_;
        auto readyDeadline = std::chrono::steady_clock::now() +
                             std::chrono::microseconds(static_cast<long>(readyWaitS * 1e6));
        if (board_->changed.wait_until(lock, readyDeadline, [&] { return ready(); })) {
            t.readyMs = std::max(sides_[0]->readyAt.load(), sides_[1]->readyAt.load()) - start_;
        }
        lock.unlock();
        std::lock_guard pl(sides_[0]->pairMutex);
        t.pair = sides_[0]->pairText;
        t.relayed = sides_[0]->relayed;
        return t;
    }

    void close() {
        guard_->closing = true;
        while (guard_->inflight > 0) {
            std::this_thread::yield();
        }
        for (auto& s : sides_) {
            s->agent.reset();
        }
    }

    IceSide& side(int i) { return *sides_[i]; }

private:
    // Runs fn on the other side's loop: inline when already there, else posted (never blocks a
    // loop on another loop).
    void toPeer(int from, std::function<void(IceSide&)> fn) {
        auto g = guard_;
        ++g->inflight;
        if (!g->closing) {
            IceSide* peer = sides_[1 - from].get();
            if (peer->loop->isLoopThread()) {
                if (peer->agent) {
                    fn(*peer);
                }
            } else {
                peer->loop->post([g, peer, fn = std::move(fn)] {
                    ++g->inflight;
                    if (!g->closing && peer->agent) {
                        fn(*peer);
                    }
                    --g->inflight;
                });
            }
        }
        --g->inflight;
    }

    Agent::Callbacks callbacks(int i) {
        IceSide* self = sides_[i].get();
        Board* board = board_.get();
        Agent::Callbacks cb;
        cb.localCandidate = [this, i](StreamId, const Candidate& c) {
            toPeer(i, [c](IceSide& peer) { peer.agent->addRemoteCandidate(peer.stream, c); });
        };
        cb.gatheringDone = [this, i](StreamId) {
            toPeer(i, [](IceSide& peer) { peer.agent->endOfRemoteCandidates(peer.stream); });
        };
        cb.stateChanged = [self, board](StreamId, ComponentId component, ComponentState state) {
            if (component != 1) {
                return;
            }
            double now = nowMs();
            {
                std::lock_guard lock(board->mutex);
                if ((state == ComponentState::Connected || state == ComponentState::Completed) &&
                    self->connectedAt == 0) {
                    self->connectedAt = now;
                    ++board->connectedSides;
                }
                if (state == ComponentState::Completed && self->readyAt == 0) {
                    self->readyAt = now;
                }
                if (state == ComponentState::Failed && !self->failed) {
                    self->failed = true;
                    ++board->failedSides;
                }
            }
            board->changed.notify_all();
        };
        cb.selectedPairChanged = [self](StreamId, ComponentId component, const CandidatePair& p) {
            if (component != 1) {
                return;
            }
            std::lock_guard lock(self->pairMutex);
            self->pairText = std::string(toString(p.local.type)) + " " + p.local.endpoint() +
                             " -> " + std::string(toString(p.remote.type)) + " " +
                             p.remote.endpoint();
            self->relayed = p.isRelayed();
        };
        cb.received = [self](StreamId stream, ComponentId component,
                             std::span<const std::byte> data) {
            self->received.fetch_add(1, std::memory_order_relaxed);
            if (self->onReceive) {
                self->onReceive();
            }
            if (self->echo) {
                self->agent->send(stream, component, data);
            }
        };
        return cb;
    }

    std::shared_ptr<Board> board_;
    std::shared_ptr<Guard> guard_ = std::make_shared<Guard>();
    std::unique_ptr<IceSide> sides_[2];
    double start_ = 0;
};

AgentConfig loopbackConfig(Role role) {
    AgentConfig c;
    c.role = role;
    c.interfaces = {"127.0.0.1"};
    c.ipv6 = false;
    return c;
}

// ------------------------------------------------------------------ contenders for data

struct Contender {
    std::string name;
    bl_endpoint_ops ops{};
};

int iceSend(void* ctx, int side, const void* data, size_t len) {
    auto* pair = static_cast<IcePair*>(ctx);
    auto& s = pair->side(side);
    return s.agent->send(s.stream, 1, std::span(static_cast<const std::byte*>(data), len)) ? 0 : -1;
}
uint64_t iceReceived(void* ctx, int side) {
    return static_cast<IcePair*>(ctx)->side(side).received.load(std::memory_order_relaxed);
}
int blSend(void* ctx, int side, const void* data, size_t len) {
    return bl_pair_send(static_cast<bl_pair*>(ctx), side, data, len);
}
uint64_t blReceived(void* ctx, int side) {
    return bl_pair_received(static_cast<bl_pair*>(ctx), side);
}

// Two connected UDP sockets on loopback and one receive thread polling both (like one loop).
class UdpPair {
public:
    UdpPair() {
        sockaddr_in addr[2]{};
        for (int i = 0; i < 2; ++i) {
            fd_[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            addr[i].sin_family = AF_INET;
            addr[i].sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            bind(fd_[i], reinterpret_cast<sockaddr*>(&addr[i]), sizeof addr[i]);
            socklen_t len = sizeof addr[i];
            getsockname(fd_[i], reinterpret_cast<sockaddr*>(&addr[i]), &len);
        }
        for (int i = 0; i < 2; ++i) {
            connect(fd_[i], reinterpret_cast<sockaddr*>(&addr[1 - i]), sizeof addr[1 - i]);
        }
        thread_ = std::thread([this] { run(); });
    }
    ~UdpPair() {
        stop_ = true;
        thread_.join();
        close(fd_[0]);
        close(fd_[1]);
    }
    int send(int side, const void* data, size_t len) {
        return ::send(fd_[side], data, len, 0) == static_cast<ssize_t>(len) ? 0 : -1;
    }
    uint64_t received(int side) const { return received_[side].load(std::memory_order_relaxed); }

private:
    void run() {
        char buf[65536];
        pollfd p[2] = {{fd_[0], POLLIN, 0}, {fd_[1], POLLIN, 0}};
        while (!stop_) {
            if (poll(p, 2, 20) <= 0) {
                continue;
            }
            for (int i = 0; i < 2; ++i) {
                if (p[i].revents & POLLIN) {
                    while (recv(fd_[i], buf, sizeof buf, MSG_DONTWAIT) >= 0) {
                        received_[i].fetch_add(1, std::memory_order_relaxed);
                    }
                }
            }
        }
    }
    int fd_[2] = {-1, -1};
    std::atomic<uint64_t> received_[2]{};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

int udpSend(void* ctx, int side, const void* data, size_t len) {
    return static_cast<UdpPair*>(ctx)->send(side, data, len);
}
uint64_t udpReceived(void* ctx, int side) {
    return static_cast<UdpPair*>(ctx)->received(side);
}

bl_config baselineConfig(const Options& o) {
    bl_config c{};
    c.timeout_s = o.timeout;
    c.ready_wait_s = 2;
    c.no_upnp = o.noUpnp;
    return c;
}

// ------------------------------------------------------------------ connect

struct ServerSetup {
    std::string stunIp, turnIp, user, pass;
    unsigned stunPort = 0, turnPort = 0;
    bool turnTcp = false;
};

void runConnect(const Options& o) {
    std::unique_ptr<support::CoturnProcess> coturn;
    ServerSetup servers;
    bool lab = o.scenario == "lab";
    if (o.scenario == "mixed") {
        support::CoturnOptions co;
        co.user = "bench";
        co.password = "benchpass";
        auto started = support::CoturnProcess::start(co);
        if (!started) {
            broke("coturn did not start: " + started.error().message);
            return;
        }
        coturn = std::move(*started);
        servers = {coturn->listenAddress(), coturn->listenAddress(), "bench", "benchpass",
                   coturn->port(),          coturn->port(),          false};
    } else if (lab) {
        auto [sip, sport] = hostPort(o.stun);
        auto [tip, tport] = hostPort(o.turn);
        servers = {sip, tip, o.user, o.pass, sport, tport, o.turnTcp};
    }
    std::string label = o.label.empty() ? o.scenario : o.label;

    // icepunch configs
    auto iceConfig = [&](Role role) {
        AgentConfig c = lab ? AgentConfig{} : loopbackConfig(role);
        c.role = role;
        if (!servers.stunIp.empty()) {
            c.stunServers.push_back(
                ServerUri::parse("stun:" + servers.stunIp + ":" + std::to_string(servers.stunPort))
                    .value());
            TurnServer t;
            t.uri =
                ServerUri::parse("turn:" + servers.turnIp + ":" + std::to_string(servers.turnPort) +
                                 (servers.turnTcp ? "?transport=tcp" : ""))
                    .value();
            t.username = servers.user;
            t.password = servers.pass;
            c.turnServers.push_back(t);
        }
        return c;
    };
    std::shared_ptr<EventLoop> loops[2];
    if (lab) {
        for (int i = 0; i < 2; ++i) {
            auto l = EventLoop::createInNetworkNamespace(i == 0 ? o.nsA : o.nsB,
                                                         i == 0 ? "bench-a" : "bench-b");
            if (!l) {
                broke("icepunch loop in namespace: " + l.error().message);
                return;
            }
            loops[i] = *l;
        }
    } else {
        loops[0] = loops[1] = EventLoop::create("bench");
    }
    bl_config bc = baselineConfig(o);
    if (lab) {
        bc.ns[0] = o.nsA.c_str();
        bc.ns[1] = o.nsB.c_str();
    } else {
        bc.local_address = "127.0.0.1";
    }
    if (!servers.stunIp.empty()) {
        bc.stun_ip = servers.stunIp.c_str();
        bc.stun_port = servers.stunPort;
        bc.turn_ip = servers.turnIp.c_str();
        bc.turn_port = servers.turnPort;
        bc.turn_tcp = servers.turnTcp;
        bc.turn_user = servers.user.c_str();
        bc.turn_pass = servers.pass.c_str();
    }

    struct Acc {
        std::vector<double> connected, ready;
        int failures = 0, relayed = 0;
        std::string lastPair, lastError;
    } acc[3]; // 0 icepunch, 1 libnice at its defaults, 2 libnice with icepunch's settings
    static const char* kImpls[3] = {"icepunch", "libnice", "libnice-tuned"};
    auto board = std::make_shared<Board>();
    for (int r = 0; r < o.runs; ++r) {
        for (int k = 0; k < 3; ++k) {
            int which = (k + r) % 3; // rotate who goes first
            double readyWait = r < o.readyRuns ? o.readyWait : 0.0;
            bc.ready_wait_s = readyWait;
            bc.tuned = which == 2;
            ConnectTimes t;
            if (which == 0) {
                IcePair pair(board);
                auto s = pair.start(iceConfig(Role::Controlling), iceConfig(Role::Controlled),
                                    loops[0], loops[1]);
                if (s) {
                    t = pair.wait(o.timeout, readyWait);
                } else {
                    t.error = s.error().message;
                }
            } else {
                bl_connect_times bt{};
                char err[256] = "";
                bl_pair* p = bl_pair_connect(&bc, &bt, err, sizeof err);
                if (p) {
                    t.ok = true;
                    t.connectedMs = bt.connected_ms;
                    t.readyMs = bt.ready_ms;
                    t.relayed = bt.relayed;
                    t.pair = bt.pair;
                    bl_pair_free(p);
                } else {
                    t.error = err;
                }
            }
            Acc& a = acc[which];
            if (t.ok) {
                a.connected.push_back(t.connectedMs);
                if (t.readyMs >= 0) {
                    a.ready.push_back(t.readyMs);
                }
                a.relayed += t.relayed;
                a.lastPair = t.pair;
            } else {
                a.failures++;
                a.lastError = t.error;
            }
        }
    }
    for (int which = 0; which < 3; ++which) {
        Acc& a = acc[which];
        Json j;
        j.add("bench", "connect")
            .add("scenario", label)
            .add("impl", kImpls[which])
            .add("runs", o.runs)
            .add("ok", static_cast<int>(a.connected.size()))
            .add("failures", a.failures)
            .add("relayed", a.relayed)
            .raw("connected_ms", summaryJson(summarize(a.connected)))
            .raw("ready_ms", summaryJson(summarize(a.ready)))
            .add("ready_runs", std::min(o.runs, o.readyRuns))
            .add("ready_seen", static_cast<int>(a.ready.size()))
            .add("pair", a.lastPair);
        if (!a.lastError.empty()) {
            j.add("error", a.lastError);
        }
        j.print();
        if (a.connected.size() * 2 < static_cast<size_t>(o.runs) || a.connected.empty()) {
            broke("connect " + label + " " + kImpls[which] + ": " +
                  std::to_string(a.connected.size()) + "/" + std::to_string(o.runs) +
                  " connected (" + a.lastError + ")");
        }
    }
}

// ------------------------------------------------------------------ datapath

void runDatapath(const Options& o) {
    auto loop = EventLoop::create("bench");
    auto board = std::make_shared<Board>();
    IcePair ice(board);
    if (auto s = ice.start(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled),
                           loop, loop);
        !s) {
        broke("icepunch pair: " + s.error().message);
        return;
    }
    if (!ice.wait(o.timeout, 2.0).ok) {
        broke("icepunch pair did not connect");
        return;
    }
    bl_config bc = baselineConfig(o);
    bc.local_address = "127.0.0.1";
    bl_connect_times bt{};
    char err[256] = "";
    bl_pair* lib = bl_pair_connect(&bc, &bt, err, sizeof err);
    if (!lib) {
        broke(std::string("libnice pair: ") + err);
        return;
    }
    UdpPair udp;
    std::vector<Contender> contenders = {
        {"udp", {udpSend, udpReceived, &udp}},
        {"libnice", {blSend, blReceived, lib}},
        {"icepunch", {iceSend, iceReceived, &ice}},
    };
    if (!o.only.empty()) {
        std::erase_if(contenders, [&](const Contender& c) { return c.name != o.only; });
    }
    // results[contender][size][both] -> per-round values
    struct Acc {
        std::vector<double> rate, mbps, cpu;
        uint64_t sent = 0, received = 0, errors = 0;
    };
    std::map<std::tuple<std::string, size_t, int>, Acc> acc;
    const size_t sizes[] = {64, 1200};
    for (int r = 0; r < o.rounds; ++r) {
        for (size_t size : sizes) {
            for (int both = 0; both < 2; ++both) {
                for (size_t k = 0; k < contenders.size(); ++k) {
                    // rotate the order each round
                    const Contender& c =
                        contenders[(k + static_cast<size_t>(r)) % contenders.size()];
                    bl_dp_result d{};
                    bl_datapath(&c.ops, size, o.seconds, both, 128, &d);
                    Acc& a = acc[{c.name, size, both}];
                    a.rate.push_back(d.dgrams_per_s);
                    a.mbps.push_back(d.mbytes_per_s);
                    a.cpu.push_back(d.cpu_s_per_mdgram);
                    a.sent += d.sent;
                    a.received += d.received;
                    a.errors += d.send_errors;
                }
            }
        }
    }
    for (auto& [key, a] : acc) {
        auto& [name, size, both] = key;
        double loss = a.sent ? static_cast<double>(a.sent - std::min(a.sent, a.received)) /
                                   static_cast<double>(a.sent)
                             : 0;
        Json()
            .add("bench", "datapath")
            .add("impl", name)
            .add("size", static_cast<int>(size))
            .add("direction", both ? "both" : "one-way")
            .add("rounds", o.rounds)
            .add("seconds", o.seconds)
            .raw("dgrams_per_s", summaryJson(summarize(a.rate)))
            .raw("mbytes_per_s", summaryJson(summarize(a.mbps)))
            .raw("cpu_s_per_mdgram", summaryJson(summarize(a.cpu)))
            .add("sent", a.sent)
            .add("received", a.received)
            .add("send_errors", a.errors)
            .add("loss", loss)
            .print();
        if (a.received == 0) {
            broke("datapath " + name + ": nothing received");
        }
    }
    bl_pair_free(lib);
}

// ------------------------------------------------------------------ scale

rlim_t raiseNofile(rlim_t want, bool& raisedHard, rlim_t& originalHard) {
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    originalHard = rl.rlim_max;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    raisedHard = false;
    if (rl.rlim_max < want) {
        long nrOpen = 1048576;
        std::ifstream("/proc/sys/fs/nr_open") >> nrOpen;
        rlimit more{std::min<rlim_t>(want, static_cast<rlim_t>(nrOpen)),
                    std::min<rlim_t>(want, static_cast<rlim_t>(nrOpen))};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0) {
            raisedHard = true;
        }
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

// After connecting every pair: RSS once nominations are done, then threads, fds and the CPU
// of an idle stretch (keepalives and consent freshness only) after `settle` (consent checks
// start 4-6 s after connecting: the steady state, not the lull).
struct IdleSample {
    long rss = 0;
    int threads = 0, fds = 0;
    double cpuS = 0, wallS = 0;
};

IdleSample measureIdle(const Options& o) {
    IdleSample s;
    std::this_thread::sleep_for(1s); // let nominations finish (READY)
    s.rss = statusKb("VmRSS");
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(o.settle * 1000)));
    s.threads = countDir("/proc/self/task");
    s.fds = countDir("/proc/self/fd");
    double cpu0 = cpuSeconds();
    double w0 = nowMs();
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<long>(o.idle * 1000)));
    s.cpuS = cpuSeconds() - cpu0;
    s.wallS = (nowMs() - w0) / 1e3;
    return s;
}

void runScale(const Options& o) {
    bool raisedHard = false;
    rlim_t originalHard = 0;
    rlim_t limit = raiseNofile(static_cast<rlim_t>(o.pairs) * 2 + 1024, raisedHard, originalHard);
    auto loop = EventLoop::create("bench-scale");
    // More loops split the per-iteration cost of one GMainContext walking every source.
    std::vector<std::shared_ptr<EventLoop>> shards{loop};
    for (int i = 1; i < o.loops; ++i) {
        shards.push_back(EventLoop::create("bench-scale"));
    }
    auto board = std::make_shared<Board>();
    {
        // warm up: load everything lazily initialised before the baseline sample
        IcePair warm(board);
        if (warm.start(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled), loop,
                       loop)) {
            warm.wait(o.timeout, 0.5);
        }
    }
    std::this_thread::sleep_for(200ms);
    board = std::make_shared<Board>();
    long rss0 = statusKb("VmRSS");
    int threads0 = countDir("/proc/self/task");
    int fds0 = countDir("/proc/self/fd");
    // libnice 0.1.21 holds two fds per agent (its socket and the eventfd of the private
    // GMainContext every component owns), and the loop one per context of 4 agents (its
    // wake-up eventfd): ask only for what RLIMIT_NOFILE can hold.
    bool oneContext = std::getenv("ICEPUNCH_BENCH_ONE_CONTEXT") != nullptr;
    double fdsPerPair = oneContext ? 4.0 : 4.5;
    int fit = std::max(
        0, static_cast<int>((static_cast<double>(std::min<rlim_t>(limit, 1 << 30)) - fds0 - 64) /
                            fdsPerPair));
    int wanted = std::min(o.pairs, fit);
    std::string capped;
    if (wanted < o.pairs) {
        capped = "RLIMIT_NOFILE " + std::to_string(limit) + " holds " + std::to_string(wanted) +
                 " pairs at " + std::to_string(fdsPerPair).substr(0, 4) + " fds per pair";
    }
    std::vector<std::unique_ptr<IcePair>> pairs;
    pairs.reserve(static_cast<size_t>(wanted));
    std::string breakReason;
    double t0 = nowMs();
    int target = 0;
    std::vector<double> batchMs; // time to connect each batch: shows how the loop scales
    for (int started = 0; started < wanted && breakReason.empty();) {
        if (nowMs() - t0 > o.budget * 1e3) {
            breakReason = "time: " + std::to_string(target) + " pairs connected after " +
                          std::to_string(static_cast<int>((nowMs() - t0) / 1e3)) + " s (budget " +
                          std::to_string(static_cast<int>(o.budget)) + " s); last batch of " +
                          std::to_string(o.batch) + " pairs took " +
                          std::to_string(static_cast<int>(batchMs.empty() ? 0 : batchMs.back())) +
                          " ms vs " +
                          std::to_string(static_cast<int>(batchMs.empty() ? 0 : batchMs.front())) +
                          " ms for the first";
            break;
        }
        double b0 = nowMs();
        int n = std::min(o.batch, wanted - started);
        target += n;
        for (int i = 0; i < n; ++i) {
            auto p = std::make_unique<IcePair>(board);
            errno = 0;
            auto& shard = shards[static_cast<size_t>(started + i) % shards.size()];
            auto s = p->start(loopbackConfig(Role::Controlling), loopbackConfig(Role::Controlled),
                              shard, shard);
            if (!s) {
                breakReason = "pair " + std::to_string(started + i) + ": " + s.error().message +
                              " (errno " + std::strerror(errno) + ", " +
                              std::to_string(countDir("/proc/self/fd")) + " fds open, limit " +
                              std::to_string(limit) + ")";
                target -= n - i;
                break;
            }
            pairs.push_back(std::move(p));
        }
        started += n;
        std::unique_lock lock(board->mutex);
        bool ok = board->changed.wait_for(lock, std::chrono::seconds(60), [&] {
            return board->connectedSides.load() + board->failedSides.load() >= 2 * target;
        });
        batchMs.push_back(nowMs() - b0);
        if (!ok || board->failedSides > 0) {
            breakReason = std::to_string(board->connectedSides.load() / 2) + " of " +
                          std::to_string(target) + " pairs connected, " +
                          std::to_string(board->failedSides.load()) + " agents failed" +
                          (ok ? "" : " (60 s batch timeout)");
        }
    }
    double connectMs = nowMs() - t0;
    int connectedPairs = board->connectedSides.load() / 2;
    IdleSample idle = measureIdle(o);
    int stillConnected = 0;
    for (auto& p : pairs) {
        stillConnected += p->connected() && !p->failed();
    }
    long rss2 = statusKb("VmRSS");
    double td0 = nowMs();
    pairs.clear();
    double teardownMs = nowMs() - td0;
    int agents = 2 * static_cast<int>(target);
    Json j;
    j.add("bench", "scale")
        .add("impl", "icepunch")
        .add("pairs_requested", o.pairs)
        .add("pairs_started", target)
        .add("pairs_capped_by", capped)
        .add("pairs_connected", connectedPairs)
        .add("pairs_connected_after_idle", stillConnected)
        .add("connect_all_ms", connectMs)
        .add("batch", o.batch)
        .add("loops", o.loops)
        .add("rss_before_kb", rss0)
        .add("rss_after_kb", idle.rss)
        .add("rss_after_idle_kb", rss2)
        .add("rss_per_agent_kb",
             agents ? static_cast<double>(idle.rss - rss0) / static_cast<double>(agents) : 0.0)
        .add("threads_before", threads0)
        .add("threads_after", idle.threads)
        .add("fds_before", fds0)
        .add("fds_after", idle.fds)
        .add("fds_per_agent",
             agents ? static_cast<double>(idle.fds - fds0) / static_cast<double>(agents) : 0.0)
        .add("nofile_limit", static_cast<uint64_t>(limit))
        .add("nofile_hard_original", static_cast<uint64_t>(originalHard))
        .add("nofile_hard_raised", raisedHard)
        .add("idle_s", idle.wallS)
        .add("idle_cpu_s", idle.cpuS)
        .add("idle_cpu_percent", idle.wallS > 0 ? 100.0 * idle.cpuS / idle.wallS : 0.0)
        .add("idle_settle_s", o.settle)
        .add("contexts", std::getenv("ICEPUNCH_BENCH_ONE_CONTEXT") ? "one per loop (baseline)"
                                                                   : "one per 4 agents")
        .add("teardown_ms", teardownMs)
        .add("break", breakReason);
    std::string curve;
    for (double b : batchMs) {
        curve += (curve.empty() ? "" : ",") + std::to_string(static_cast<int>(b));
    }
    j.raw("batch_ms", "[" + curve + "]");
    j.print();
    if (connectedPairs == 0) {
        broke("scale: no pair connected: " + breakReason);
    }
}

// ------------------------------------------------------------------ scale, raw libnice

// The same idle pairs on raw libnice (icepunch's settings: consent freshness, trickle, no UPnP,
// no ICE-TCP), every agent on one shared GMainContext thread, as an app on libnice would run
// them. What libnice itself costs per idle agent, in memory and CPU: icepunch's figures next to
// it show what icepunch adds.
void runScaleLibnice(const Options& o) {
    bool raisedHard = false;
    rlim_t originalHard = 0;
    rlim_t limit = raiseNofile(static_cast<rlim_t>(o.pairs) * 2 + 1024, raisedHard, originalHard);
    bl_loop* loop = bl_loop_new();
    bl_config c = baselineConfig(o);
    c.tuned = 1;
    c.no_upnp = 1;
    c.local_address = "127.0.0.1";
    c.loop = loop;
    char err[256] = {};
    if (bl_pair* warm = bl_pair_connect(&c, nullptr, err, sizeof err)) {
        bl_pair_free(warm); // warm up: lazily initialised state before the baseline sample
    }
    std::this_thread::sleep_for(200ms);
    long rss0 = statusKb("VmRSS");
    int threads0 = countDir("/proc/self/task");
    int fds0 = countDir("/proc/self/fd");
    // Two fds per agent (its socket and its component's private GMainContext's eventfd).
    int fit =
        std::max(0, static_cast<int>(
                        (static_cast<double>(std::min<rlim_t>(limit, 1 << 30)) - fds0 - 64) / 4.0));
    int wanted = std::min(o.pairs, fit);
    std::vector<bl_pair*> pairs(static_cast<size_t>(wanted), nullptr);
    std::atomic<int> next{0}, failed{0};
    std::string firstError;
    std::mutex errorMutex;
    double t0 = nowMs();
    {
        // bl_pair_connect waits for its pair: a few callers at once keep the loop busy.
        std::vector<std::thread> workers;
        for (int w = 0; w < 8; ++w) {
            workers.emplace_back([&] {
                char e[256] = {};
                for (int i; (i = next++) < wanted;) {
                    pairs[static_cast<size_t>(i)] = bl_pair_connect(&c, nullptr, e, sizeof e);
                    if (!pairs[static_cast<size_t>(i)]) {
                        ++failed;
                        std::lock_guard lock(errorMutex);
                        if (firstError.empty()) {
                            firstError = "pair " + std::to_string(i) + ": " + e;
                        }
                    }
                }
            });
        }
        for (auto& w : workers) {
            w.join();
        }
    }
    double connectMs = nowMs() - t0;
    int connected = wanted - failed.load();
    IdleSample idle = measureIdle(o);
    int stillConnected = 0;
    for (bl_pair* p : pairs) {
        stillConnected += p && bl_pair_ok(p);
    }
    double td0 = nowMs();
    for (bl_pair* p : pairs) {
        bl_pair_free(p);
    }
    bl_loop_free(loop);
    double teardownMs = nowMs() - td0;
    int agents = 2 * connected;
    Json j;
    j.add("bench", "scale-libnice")
        .add("impl", "libnice")
        .add("pairs_requested", o.pairs)
        .add("pairs_started", wanted)
        .add("pairs_connected", connected)
        .add("pairs_connected_after_idle", stillConnected)
        .add("connect_all_ms", connectMs)
        .add("rss_before_kb", rss0)
        .add("rss_after_kb", idle.rss)
        .add("rss_per_agent_kb",
             agents ? static_cast<double>(idle.rss - rss0) / static_cast<double>(agents) : 0.0)
        .add("threads_before", threads0)
        .add("threads_after", idle.threads)
        .add("fds_per_agent",
             agents ? static_cast<double>(idle.fds - fds0) / static_cast<double>(agents) : 0.0)
        .add("idle_s", idle.wallS)
        .add("idle_cpu_s", idle.cpuS)
        .add("idle_cpu_percent", idle.wallS > 0 ? 100.0 * idle.cpuS / idle.wallS : 0.0)
        .add("idle_cpu_percent_per_10k",
             agents && idle.wallS > 0 ? 100.0 * idle.cpuS / idle.wallS * 10000 / agents : 0.0)
        .add("idle_settle_s", o.settle)
        .add("teardown_ms", teardownMs)
        .add("break", firstError);
    j.print();
    if (connected == 0) {
        broke("scale-libnice: no pair connected: " + firstError);
    }
}

// ------------------------------------------------------------------ scale floor

// The physical floor of idle agents: the consent traffic alone, on raw UDP sockets and one epoll
// loop, with no ICE stack. Each of 2N sockets sends a STUN-sized request every 4-6 s (RFC 7675's
// interval, as libnice does) and answers its peer's; every datagram is its own wake-up, read
// until EAGAIN as libnice does. What icepunch costs above this is the stack's, not the network's.
void runScaleFloor(const Options& o) {
    bool raisedHard = false;
    rlim_t originalHard = 0;
    rlim_t limit = raiseNofile(static_cast<rlim_t>(o.pairs) * 2 + 1024, raisedHard, originalHard);
    int pairs = std::min<int>(o.pairs, static_cast<int>((limit - 128) / 2));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    std::vector<int> fds;
    for (int i = 0; i < pairs; ++i) {
        int a = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int b = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in sa{}, sb{};
        socklen_t len = sizeof sa;
        sa.sin_family = sb.sin_family = AF_INET;
        sa.sin_addr.s_addr = sb.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (a < 0 || b < 0 || bind(a, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 ||
            bind(b, reinterpret_cast<sockaddr*>(&sb), sizeof sb) != 0) {
            broke(std::string("scale floor: socket: ") + std::strerror(errno));
            return;
        }
        getsockname(a, reinterpret_cast<sockaddr*>(&sa), &len);
        len = sizeof sb;
        getsockname(b, reinterpret_cast<sockaddr*>(&sb), &len);
        connect(a, reinterpret_cast<sockaddr*>(&sb), sizeof sb);
        connect(b, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
        for (int fd : {a, b}) {
            epoll_event e{};
            e.events = EPOLLIN;
            e.data.u32 = static_cast<uint32_t>(fds.size());
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
            fds.push_back(fd);
        }
    }
    using Due = std::pair<double, uint32_t>; // ms, socket index
    std::priority_queue<Due, std::vector<Due>, std::greater<>> timers;
    std::mt19937 rng(12345);
    std::uniform_real_distribution<double> interval(4000, 6000), first(0, 5000);
    double t0 = nowMs();
    for (uint32_t i = 0; i < fds.size(); ++i) {
        timers.push({t0 + first(rng), i}); // already in the steady state
    }
    uint8_t request[100] = {0x00, 0x01}, response[100] = {0x01, 0x01}, buffer[1500];
    uint64_t sent = 0, received = 0;
    double cpu0 = cpuSeconds();
    double end = t0 + o.idle * 1000;
    epoll_event events[256];
    for (double now = nowMs(); now < end; now = nowMs()) {
        int wait = timers.empty() ? 100 : static_cast<int>(std::ceil(timers.top().first - now));
        int n = epoll_wait(ep, events, 256, std::max(0, std::min(wait, 100)));
        for (int i = 0; i < n; ++i) {
            int fd = fds[events[i].data.u32];
            while (recv(fd, buffer, sizeof buffer, 0) > 0) {
                ++received;
                if (buffer[0] == 0x00) { // a request: answer it
                    sent += send(fd, response, sizeof response, 0) > 0;
                }
            }
        }
        now = nowMs();
        while (!timers.empty() && timers.top().first <= now) {
            auto [due, index] = timers.top();
            timers.pop();
            sent += send(fds[index], request, sizeof request, 0) > 0;
            timers.push({due + interval(rng), index});
        }
    }
    double cpu = cpuSeconds() - cpu0;
    double wall = (nowMs() - t0) / 1e3;
    for (int fd : fds) {
        close(fd);
    }
    close(ep);
    Json j;
    j.add("bench", "scale-floor")
        .add("agents", static_cast<int>(fds.size()))
        .add("idle_s", wall)
        .add("datagrams_sent", sent)
        .add("datagrams_received", received)
        .add("idle_cpu_percent", wall > 0 ? 100.0 * cpu / wall : 0.0)
        .add("idle_cpu_percent_per_10k",
             fds.empty() ? 0.0 : 100.0 * cpu / wall * 10000 / static_cast<double>(fds.size()));
    j.print();
}

// ------------------------------------------------------------------ relay

struct Pinger {
    std::mutex mutex;
    std::condition_variable cv;
    uint64_t count = 0;
    void hit() {
        {
            std::lock_guard lock(mutex);
            ++count;
        }
        cv.notify_all();
    }
};

// K sequential round trips: side 0 sends, side 1 echoes; RTT in ms.
std::vector<double> pingPong(Pinger& pinger, const std::function<int(const void*, size_t)>& send,
                             int count) {
    std::vector<double> rtts;
    char payload[32] = "ping";
    for (int k = 0; k < count; ++k) {
        std::unique_lock lock(pinger.mutex);
        uint64_t base = pinger.count;
        lock.unlock();
        double t = nowMs();
        if (send(payload, sizeof payload) != 0) {
            continue;
        }
        lock.lock();
        if (pinger.cv.wait_for(lock, 1s, [&] { return pinger.count > base; })) {
            rtts.push_back(nowMs() - t);
        }
    }
    return rtts;
}

void runRelay(const Options& o) {
    support::CoturnOptions co;
    co.user = "bench";
    co.password = "benchpass";
    co.tls = true;
    auto started = support::CoturnProcess::start(co);
    if (!started) {
        broke("coturn did not start: " + started.error().message);
        return;
    }
    auto coturn = std::move(*started);
    auto loop = EventLoop::create("bench-relay");
    const char* transports[] = {"udp", "tcp", "tls"};
    for (const char* transport : transports) {
        std::string tr = transport;
        for (int which = 0; which < 2; ++which) {
            if (which == 1 && tr == "tls") {
                continue; // libnice's TURN-TLS: not compared (icepunch bridges TLS itself)
            }
            std::vector<double> connectMs, rtts, rates, mbps;
            double loss = 0;
            int failures = 0;
            std::string error, pairText;
            for (int r = 0; r < o.runs; ++r) {
                Pinger pinger;
                bl_endpoint_ops ops{};
                std::function<int(const void*, size_t)> send;
                std::unique_ptr<IcePair> ice;
                bl_pair* lib = nullptr;
                if (which == 0) {
                    auto config = [&](Role role) {
                        AgentConfig c = loopbackConfig(role);
                        c.policy = CandidatePolicy::RelayOnly;
                        TurnServer t;
                        t.uri = ServerUri::parse(tr == "tls" ? coturn->uri("turns")
                                                             : coturn->uri("turn", tr))
                                    .value();
                        t.username = "bench";
                        t.password = "benchpass";
                        t.tls.caFile = coturn->caFile();
                        c.turnServers.push_back(t);
                        return c;
                    };
                    ice = std::make_unique<IcePair>(std::make_shared<Board>());
                    auto s =
                        ice->start(config(Role::Controlling), config(Role::Controlled), loop, loop);
                    ConnectTimes t;
                    if (s) {
                        t = ice->wait(o.timeout, 0);
                    } else {
                        t.error = s.error().message;
                    }
                    if (!t.ok) {
                        failures++;
                        error = t.error;
                        continue;
                    }
                    connectMs.push_back(t.connectedMs);
                    pairText = t.pair;
                    ice->side(0).onReceive = [&pinger] {
                        pinger.hit();
                    };
                    ice->side(1).echo = true;
                    IcePair* p = ice.get();
                    send = [p](const void* d, size_t n) {
                        return iceSend(p, 0, d, n);
                    };
                    ops = {iceSend, iceReceived, p};
                } else {
                    bl_config bc = baselineConfig(o);
                    bc.local_address = "127.0.0.1";
                    bc.relay_only = 1;
                    bc.turn_ip = coturn->listenAddress().c_str();
                    bc.turn_port = coturn->port();
                    bc.turn_tcp = tr == "tcp";
                    bc.turn_user = "bench";
                    bc.turn_pass = "benchpass";
                    bc.ready_wait_s = 0;
                    bl_connect_times bt{};
                    char err[256] = "";
                    lib = bl_pair_connect(&bc, &bt, err, sizeof err);
                    if (!lib) {
                        failures++;
                        error = err;
                        continue;
                    }
                    connectMs.push_back(bt.connected_ms);
                    pairText = bt.pair;
                    bl_pair_set_on_receive(
                        lib, 0,
                        [](void* user, const void*, size_t) { static_cast<Pinger*>(user)->hit(); },
                        &pinger);
                    bl_pair_set_echo(lib, 1, 1);
                    send = [lib](const void* d, size_t n) {
                        return bl_pair_send(lib, 0, d, n);
                    };
                    ops = {blSend, blReceived, lib};
                }
                auto r1 = pingPong(pinger, send, o.pings);
                rtts.insert(rtts.end(), r1.begin(), r1.end());
                // throughput: echo off, one way
                if (ice) {
                    ice->side(1).echo = false;
                } else {
                    bl_pair_set_echo(lib, 1, 0);
                }
                bl_dp_result d{};
                bl_datapath(&ops, 1200, o.seconds, 0, 64, &d);
                rates.push_back(d.dgrams_per_s);
                mbps.push_back(d.mbytes_per_s);
                loss += d.loss;
                if (ice) {
                    ice->close();
                    ice.reset();
                }
                if (lib) {
                    bl_pair_free(lib);
                }
            }
            int ok = static_cast<int>(connectMs.size());
            Json j;
            j.add("bench", "relay")
                .add("impl", which == 0 ? "icepunch" : "libnice")
                .add("transport", tr)
                .add("runs", o.runs)
                .add("ok", ok)
                .add("failures", failures)
                .raw("connected_ms", summaryJson(summarize(connectMs)))
                .raw("rtt_ms", summaryJson(summarize(rtts)))
                .add("pings", static_cast<int>(rtts.size()))
                .raw("dgrams_per_s", summaryJson(summarize(rates)))
                .raw("mbytes_per_s", summaryJson(summarize(mbps)))
                .add("loss", ok ? loss / ok : 0.0)
                .add("pair", pairText);
            if (!error.empty()) {
                j.add("error", error);
            }
            j.print();
            if (ok == 0 || rtts.empty()) {
                broke("relay " + tr + " " + (which == 0 ? "icepunch" : "libnice") + ": " + error);
            }
        }
    }
}

[[noreturn]] void usage() {
    std::fprintf(stderr, "usage: bench_icepunch connect|datapath|scale|relay [options] (see the "
                         "top of bench/bench_icepunch.cpp)\n");
    std::exit(2);
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage();
    }
    Options o;
    o.mode = argv[1];
    for (int i = 2; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                usage();
            }
            return argv[++i];
        };
        if (a == "--scenario") {
            o.scenario = next();
        } else if (a == "--label") {
            o.label = next();
        } else if (a == "--runs") {
            o.runs = std::stoi(next());
        } else if (a == "--only") {
            o.only = next();
        } else if (a == "--rounds") {
            o.rounds = std::stoi(next());
        } else if (a == "--pairs") {
            o.pairs = std::stoi(next());
        } else if (a == "--loops") {
            o.loops = std::max(1, std::stoi(next()));
        } else if (a == "--batch") {
            o.batch = std::stoi(next());
        } else if (a == "--pings") {
            o.pings = std::stoi(next());
        } else if (a == "--seconds") {
            o.seconds = std::stod(next());
        } else if (a == "--budget") {
            o.budget = std::stod(next());
        } else if (a == "--idle") {
            o.idle = std::stod(next());
        } else if (a == "--settle") {
            o.settle = std::stod(next());
        } else if (a == "--timeout") {
            o.timeout = std::stod(next());
        } else if (a == "--ready-wait") {
            o.readyWait = std::stod(next());
        } else if (a == "--ready-runs") {
            o.readyRuns = std::stoi(next());
        } else if (a == "--no-upnp") {
            o.noUpnp = true;
        } else if (a == "--ns-a") {
            o.nsA = next();
        } else if (a == "--ns-b") {
            o.nsB = next();
        } else if (a == "--stun") {
            o.stun = next();
        } else if (a == "--turn") {
            o.turn = next();
        } else if (a == "--turn-tcp") {
            o.turnTcp = true;
        } else if (a == "--user") {
            o.user = next();
        } else if (a == "--pass") {
            o.pass = next();
        } else {
            usage();
        }
    }
    if (o.mode == "connect") {
        runConnect(o);
    } else if (o.mode == "datapath") {
        runDatapath(o);
    } else if (o.mode == "scale") {
        runScale(o);
    } else if (o.mode == "scale-libnice") {
        runScaleLibnice(o);
    } else if (o.mode == "scale-floor") {
        runScaleFloor(o);
    } else if (o.mode == "relay") {
        runRelay(o);
    } else {
        usage();
    }
    return g_exit;
}
