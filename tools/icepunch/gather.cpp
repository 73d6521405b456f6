// icepunch gather: gathers candidates with the given servers and reports each server's answer.
#include "commands.hpp"
#include "options.hpp"

#include <icepunch/icepunch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

namespace icepunch::cli {

namespace {

using Clock = std::chrono::steady_clock;

const char* const kHelp =
    "usage: icepunch gather [options]\n"
    "\n"
    "Gathers ICE candidates (host, server-reflexive, relayed) and prints each one as it\n"
    "arrives: ms since start, type, transport, address, related address, priority and the\n"
    "server that produced it. Then one line per server: whether it answered, how long it\n"
    "took and, if not, the failure in words (timeout, 401 Unauthorized, TLS certificate\n"
    "rejected ...).\n"
    "\n"
    "options:\n"
    "%s"
    "  --json              one JSON object per line: {\"event\":\"candidate\",...} then\n"
    "                      {\"event\":\"server\",...}\n"
    "  --timeout S         give servers S seconds to answer (default 5)\n"
    "  -4, -6              IPv4 only, IPv6 only\n"
    "  --interface X       gather on this interface name or local address only\n"
    "                      (repeatable; loopback only when listed)\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 every server answered, 1 a server failed or nothing was gathered,\n"
    "2 usage error.\n";

struct Gathered {
    Candidate candidate;
    std::chrono::milliseconds at;
    bool pending = false; // printed once its server is known (or at the end)
};

std::string serverFor(const Candidate& c, const AgentConfig& config,
                      const std::vector<ServerStatus>& statuses) {
    if (c.type == CandidateType::Host)
        return "-";
    for (const auto& s : statuses) {
        if (s.candidate && s.candidate->address == c.address && s.candidate->port == c.port &&
            s.candidate->type == c.type)
            return s.uri.toString();
    }
    if (c.type == CandidateType::ServerReflexive) {
        if (!config.stunServers.empty())
            return config.stunServers.front().toString();
        if (!config.turnServers.empty())
            return config.turnServers.front().uri.toString();
    }
    if (c.type == CandidateType::Relayed && config.turnServers.size() == 1)
        return config.turnServers.front().uri.toString();
    return "?";
}

} // namespace

int runGather(int argc, char** argv) {
    ArgScanner args("gather", argc, argv);
    ServerOptions servers;
    AgentConfig config;
    bool json = false;
    double timeout = 5;
    for (; !args.done(); args.next()) {
        if (auto handled = servers.handle(args)) {
            if (*handled != kExitOk)
                return *handled;
        } else if (args.is("-h") || args.is("--help")) {
            std::printf(kHelp, kServerOptionsHelp);
            return kExitOk;
        } else if (args.is("--json")) {
            if (!args.flag())
                return kExitUsage;
            json = true;
        } else if (args.is("--timeout")) {
            if (!args.number(timeout, 0.1, 3600))
                return kExitUsage;
        } else if (args.is("-4")) {
            config.ipv6 = false;
        } else if (args.is("-6")) {
            config.ipv4 = false;
        } else if (args.is("--interface")) {
            std::string x;
            if (!args.value(x))
                return kExitUsage;
            config.interfaces.push_back(x);
        } else {
            return args.unknown();
        }
    }
    if (!config.ipv4 && !config.ipv6)
        return args.usageError("-4 and -6 exclude each other");
    if (!servers.build(args, config.turnServers))
        return kExitUsage;
    config.stunServers = servers.stun;
    config.gatherTimeout = std::chrono::milliseconds(static_cast<long>(timeout * 1000));

    std::mutex mutex;
    std::condition_variable changed;
    bool done = false;
    std::vector<ServerStatus> statuses;
    std::vector<Gathered> candidates;
    auto start = Clock::now();
    const bool progress = !json && stderrIsTerminal();

    auto print = [&](const Gathered& g) {
        std::string server = serverFor(g.candidate, config, statuses);
        const Candidate& c = g.candidate;
        std::string related = c.relatedAddress && c.relatedPort
                                  ? endpointText(*c.relatedAddress, *c.relatedPort)
                                  : std::string("-");
        if (json) {
            emitLine(stdout, "{\"event\":\"candidate\",\"ms\":" + std::to_string(g.at.count()) +
                                 ",\"type\":" + jsonString(toString(c.type)) +
                                 ",\"transport\":" + jsonString(toString(c.transport)) +
                                 ",\"address\":" + jsonString(c.endpoint()) + ",\"related\":" +
                                 (related == "-" ? std::string("null") : jsonString(related)) +
                                 ",\"priority\":" + std::to_string(c.priority) +
                                 ",\"server\":" + (server == "-" ? "null" : jsonString(server)) +
                                 ",\"candidate\":" + jsonString(c.toString()) + "}");
        } else {
            std::printf("%7lld  %-5s  %-3s  %-28s  %-28s  %10u  %s\n",
                        static_cast<long long>(g.at.count()), std::string(toString(c.type)).c_str(),
                        std::string(toString(c.transport)).c_str(), c.endpoint().c_str(),
                        related.c_str(), c.priority, server.c_str());
            std::fflush(stdout);
        }
    };

    Agent::Callbacks cb;
    cb.localCandidate = [&](StreamId, const Candidate& c) {
        std::lock_guard lock(mutex);
        Gathered g{c, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start)};
        g.pending = serverFor(c, config, statuses) == "?";
        candidates.push_back(g);
        if (!g.pending)
            print(g);
    };
    cb.serverStatus = [&](StreamId, const ServerStatus& s) {
        std::lock_guard lock(mutex);
        statuses.push_back(s);
        for (auto& g : candidates) {
            if (g.pending && serverFor(g.candidate, config, statuses) != "?") {
                g.pending = false;
                print(g);
            }
        }
        if (progress)
            std::fprintf(stderr, "  ... %s answered\n", s.uri.toString().c_str());
        changed.notify_all();
    };
    cb.gatheringDone = [&](StreamId) {
        std::lock_guard lock(mutex);
        done = true;
        changed.notify_all();
    };

    auto agent = Agent::create(config, cb);
    if (!agent) {
        std::fprintf(stderr, "icepunch gather: %s\n", agent.error().message.c_str());
        return kExitFailure;
    }
    auto stream = (*agent)->addStream(1);
    if (!stream) {
        std::fprintf(stderr, "icepunch gather: %s\n", stream.error().message.c_str());
        return kExitFailure;
    }
    if (!json)
        std::printf("%7s  %-5s  %-3s  %-28s  %-28s  %10s  %s\n", "ms", "type", "net", "address",
                    "related", "priority", "server");
    if (progress)
        std::fprintf(stderr, "  ... gathering\n");
    start = Clock::now();
    if (auto st = (*agent)->gather(*stream); !st) {
        std::fprintf(stderr, "icepunch gather: %s\n", st.error().message.c_str());
        return kExitFailure;
    }
    const std::size_t serverCount = config.stunServers.size() + config.turnServers.size();
    {
        std::unique_lock lock(mutex);
        changed.wait_for(lock, config.gatherTimeout + std::chrono::seconds(3),
                         [&] { return done && statuses.size() >= serverCount; });
    }
    (*agent).reset(); // no callback runs after this
    bool allOk = true;
    for (auto& g : candidates) {
        if (g.pending) {
            g.pending = false;
            print(g);
        }
    }
    auto report = [&](const ServerStatus& s) {
        allOk = allOk && s.ok;
        if (json) {
            emitLine(stdout, "{\"event\":\"server\",\"uri\":" + jsonString(s.uri.toString()) +
                                 ",\"ok\":" + (s.ok ? "true" : "false") +
                                 ",\"ms\":" + std::to_string(s.elapsed.count()) +
                                 ",\"stun_error\":" + std::to_string(s.stunError) +
                                 ",\"message\":" + jsonString(s.message) + "}");
        } else {
            std::printf("server %s: %s, %s after %lld ms\n", s.uri.toString().c_str(),
                        s.ok ? "reachable" : "FAILED", s.message.c_str(),
                        static_cast<long long>(s.elapsed.count()));
        }
    };
    if (!json && serverCount > 0)
        std::printf("\n");
    for (const auto& s : statuses)
        report(s);
    auto missing = [&](const ServerUri& uri) {
        for (const auto& s : statuses)
            if (s.uri == uri)
                return false;
        return true;
    };
    std::vector<ServerUri> all = config.stunServers;
    for (const auto& t : config.turnServers)
        all.push_back(t.uri);
    for (const auto& uri : all) {
        if (missing(uri))
            report({uri,
                    false,
                    std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start),
                    0,
                    "no answer within the gathering time",
                    {}});
    }
    if (!done)
        std::fprintf(stderr, "icepunch gather: gathering did not finish in time\n");
    if (candidates.empty()) {
        std::fprintf(stderr, "icepunch gather: no candidates were gathered\n");
        return kExitFailure;
    }
    std::fflush(stdout);
    return allOk && done ? kExitOk : kExitFailure;
}

} // namespace icepunch::cli
