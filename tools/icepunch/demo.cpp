// icepunch demo: two agents in one process connect through a coturn started on 127.0.0.1.
#include "commands.hpp"

#include "coturn_process.hpp"

#include <icepunch/icepunch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>

namespace icepunch::cli {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Side {
    explicit Side(const char* n) : name(n) {}
    const char* name;
    std::unique_ptr<Agent> agent;
    StreamId stream = 0;
    std::optional<CandidatePair> pair;
    std::optional<Clock::time_point> connectedAt;
    std::optional<Failure> failure;
    std::optional<Clock::time_point> secureAt;
    std::optional<std::string> insecure;
    uint64_t received = 0;
};

struct Demo {
    std::mutex mutex;
    std::condition_variable changed;
    Clock::time_point start = Clock::now();
    Side a{"A"}, b{"B"};

    double sinceStart() const {
        return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    }

    Agent::Callbacks callbacks(Side& self, Side& other) {
        Agent::Callbacks cb;
        cb.localCandidate = [this, &self, &other](StreamId, const Candidate& c) {
            std::printf("%8.1f ms  %s candidate  %-5s %s %s\n", sinceStart(), self.name,
                        std::string(toString(c.type)).c_str(),
                        std::string(toString(c.transport)).c_str(), c.endpoint().c_str());
            other.agent->addRemoteCandidate(other.stream, c); // trickle
        };
        cb.gatheringDone = [this, &self, &other](StreamId) {
            std::printf("%8.1f ms  %s gathering done\n", sinceStart(), self.name);
            other.agent->endOfRemoteCandidates(other.stream);
        };
        cb.serverStatus = [this, &self](StreamId, const ServerStatus& s) {
            std::printf("%8.1f ms  %s server %s: %s\n", sinceStart(), self.name,
                        s.uri.toString().c_str(), s.message.c_str());
        };
        cb.selectedPairChanged = [this, &self](StreamId, ComponentId, const CandidatePair& p) {
            std::lock_guard lock(mutex);
            self.pair = p;
            changed.notify_all();
        };
        cb.stateChanged = [this, &self](StreamId, ComponentId, ComponentState state) {
            std::lock_guard lock(mutex);
            if (state == ComponentState::Connected && !self.connectedAt) {
                self.connectedAt = Clock::now();
                std::printf("%8.1f ms  %s connected\n", sinceStart(), self.name);
            }
            changed.notify_all();
        };
        cb.failed = [this, &self](StreamId, ComponentId, const Failure& f) {
            std::lock_guard lock(mutex);
            self.failure = f;
            changed.notify_all();
        };
        cb.secureConnected = [this, &self](StreamId, ComponentId, const SecureInfo& info) {
            std::lock_guard lock(mutex);
            self.secureAt = Clock::now();
            std::printf("%8.1f ms  %s secure: DTLS %s %s as %s, peer fingerprint %s verified%s\n",
                        sinceStart(), self.name, info.version.c_str(), info.cipher.c_str(),
                        info.dtlsClient ? "client" : "server",
                        info.peerFingerprint.value.substr(0, 11).c_str(),
                        info.srtp ? (", SRTP " + info.srtp->profile).c_str() : "");
            changed.notify_all();
        };
        cb.secureFailed = [this, &self](StreamId, ComponentId, const std::string& why) {
            std::lock_guard lock(mutex);
            if (!self.secureAt && !self.insecure)
                self.insecure = why;
            changed.notify_all();
        };
        cb.received = [this, &self](StreamId, ComponentId, std::span<const std::byte>) {
            std::lock_guard lock(mutex);
            ++self.received;
            changed.notify_all();
        };
        return cb;
    }
};

const char* pathName(const CandidatePair& p) {
    return p.isRelayed() ? "relayed via TURN" : "direct";
}

// One run: both agents gather with the server, trickle to each other, connect, exchange data.
int runOnce(const support::CoturnProcess& turn, bool relayOnly) {
    Demo demo;
    AgentConfig config;
    config.interfaces = {"127.0.0.1"};
    config.ipv6 = false;
    config.stunServers.push_back(ServerUri::parse(turn.uri("stun")).value());
    TurnServer server;
    server.uri = ServerUri::parse(turn.uri("turn")).value();
    server.username = "demo";
    server.password = "demo-password";
    config.turnServers.push_back(server);
    config.policy = relayOnly ? CandidatePolicy::RelayOnly : CandidatePolicy::All;
    config.security.enabled = true; // DTLS: the data below is encrypted

    std::printf("\n== %s ==\n", relayOnly ? "relay-only policy (forced through TURN)"
                                          : "all candidates (host, srflx, relay)");
    auto configA = config;
    configA.role = Role::Controlling;
    auto configB = config;
    configB.role = Role::Controlled;
    auto agentA = Agent::create(configA, demo.callbacks(demo.a, demo.b));
    auto agentB = Agent::create(configB, demo.callbacks(demo.b, demo.a));
    if (!agentA || !agentB) {
        std::fprintf(stderr, "icepunch demo: %s\n",
                     (!agentA ? agentA.error() : agentB.error()).message.c_str());
        return 1;
    }
    demo.a.agent = std::move(*agentA);
    demo.b.agent = std::move(*agentB);
    demo.a.stream = demo.a.agent->addStream(1).value();
    demo.b.stream = demo.b.agent->addStream(1).value();
    // Credentials first, as a signalling channel would carry them; candidates then trickle.
    demo.b.agent->setRemoteDescription(demo.b.stream,
                                       demo.a.agent->localDescription(demo.a.stream).value());
    demo.a.agent->setRemoteDescription(demo.a.stream,
                                       demo.b.agent->localDescription(demo.b.stream).value());
    demo.start = Clock::now();
    demo.a.agent->gather(demo.a.stream);
    demo.b.agent->gather(demo.b.stream);

    std::unique_lock lock(demo.mutex);
    bool ok = demo.changed.wait_for(lock, 15s, [&] {
        return (demo.a.secureAt && demo.a.pair && demo.b.secureAt && demo.b.pair) ||
               demo.a.failure || demo.b.failure || demo.a.insecure || demo.b.insecure;
    });
    if (!ok || demo.a.failure || demo.b.failure || demo.a.insecure || demo.b.insecure) {
        std::fprintf(stderr, "icepunch demo: not connected securely: %s\n",
                     demo.a.failure    ? demo.a.failure->message.c_str()
                     : demo.b.failure  ? demo.b.failure->message.c_str()
                     : demo.a.insecure ? demo.a.insecure->c_str()
                     : demo.b.insecure ? demo.b.insecure->c_str()
                                       : "no secure connection within 15 s");
        return 1;
    }
    for (Side* side : {&demo.a, &demo.b}) {
        auto ms = std::chrono::duration<double, std::milli>(*side->connectedAt - demo.start);
        auto secureMs = std::chrono::duration<double, std::milli>(*side->secureAt - demo.start);
        std::printf("%s selected pair: %s %s -> %s %s (%s), connected after %.1f ms, secure "
                    "after %.1f ms\n",
                    side->name, std::string(toString(side->pair->local.type)).c_str(),
                    side->pair->local.endpoint().c_str(),
                    std::string(toString(side->pair->remote.type)).c_str(),
                    side->pair->remote.endpoint().c_str(), pathName(*side->pair), ms.count(),
                    secureMs.count());
    }
    lock.unlock();
    const int count = 1000;
    for (int i = 0; i < count; ++i) {
        (void)demo.a.agent->send(demo.a.stream, 1, "hello through icepunch");
        (void)demo.b.agent->send(demo.b.stream, 1, "hello back");
        if (i % 64 == 63) {
            std::unique_lock wait(demo.mutex);
            demo.changed.wait_for(wait, 2s, [&] {
                return demo.b.received + 16 >= uint64_t(i) && demo.a.received + 16 >= uint64_t(i);
            });
        }
    }
    lock.lock();
    demo.changed.wait_for(lock, 5s,
                          [&] { return demo.a.received >= count && demo.b.received >= count; });
    std::printf("data (DTLS-encrypted): A->B %llu/%d datagrams, B->A %llu/%d datagrams\n",
                static_cast<unsigned long long>(demo.b.received), count,
                static_cast<unsigned long long>(demo.a.received), count);
    bool relayedAsExpected = !relayOnly || demo.a.pair->isRelayed();
    lock.unlock();
    demo.a.agent.reset();
    demo.b.agent.reset();
    return relayedAsExpected ? 0 : 1;
}

} // namespace

int runDemo(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
            std::printf(
                "usage: icepunch demo\n\n"
                "Starts coturn (turnserver) on 127.0.0.1 with an ephemeral port, then runs\n"
                "two ICE agents in this process that gather host, srflx and relay\n"
                "candidates, trickle them to each other, connect and exchange data;\n"
                "once with all candidates and once forced through the TURN relay.\n"
                "Prints candidates, the selected pair and the time to connected.\n");
            return 0;
        }
        std::fprintf(stderr, "icepunch demo: unknown option \"%s\"\n", argv[i]);
        return 2;
    }
    support::CoturnOptions options;
    options.user = "demo";
    options.password = "demo-password";
    auto turn = support::CoturnProcess::start(options);
    if (!turn) {
        std::fprintf(stderr, "icepunch demo: could not start coturn: %s\n",
                     turn.error().message.c_str());
        return 1;
    }
    std::printf("coturn %d listening on %s (started in %lld ms)\n", (*turn)->pid(),
                (*turn)->uri("turn").c_str(),
                static_cast<long long>((*turn)->startupTime().count()));
    int rc = runOnce(**turn, false);
    if (rc == 0) {
        rc = runOnce(**turn, true);
    }
    (*turn)->stop();
    std::printf("\ncoturn stopped. %s\n", rc == 0 ? "demo succeeded" : "demo FAILED");
    return rc;
}

} // namespace icepunch::cli
