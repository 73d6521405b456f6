// icepunch turn-check: two allocations on one TURN server relay a payload to each other.
#include "commands.hpp"
#include "options.hpp"

#include "impl/net_util.hpp"
#include "impl/tls_bridge.hpp"
#include "impl/turn_probe.hpp"

#include <icepunch/icepunch.hpp>

#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

namespace icepunch::cli {

namespace {

const char* const kHelp =
    "usage: icepunch turn-check --turn URI (--user U --pass P | --secret S) [options]\n"
    "\n"
    "Checks a TURN server end to end: two allocations from two local sockets, a permission\n"
    "each for the other's relayed address, then a payload relayed both ways. Reports the\n"
    "relayed address, the allocation lifetime, the Allocate round trip and the round trip\n"
    "through the relay, or the failure in words (timeout, 401 Unauthorized, 437 Allocation\n"
    "Mismatch, TLS certificate rejected ...). turns: URIs go over TLS (1.2+) with the\n"
    "certificate verified against --ca (default: the system store).\n"
    "\n"
    "options:\n"
    "  --turn URI          turn:host[:port][?transport=udp|tcp] or turns:host[:port]\n"
    "  --user U --pass P   long-term credentials\n"
    "  --secret S          TURN REST shared secret instead of --user/--pass\n"
    "  --ca FILE           PEM file of trusted CAs for turns:\n"
    "  --timeout S         bound for the whole check (default 5)\n"
    "  --json              one JSON object on one line\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 relayed both ways, 1 failure, 2 usage error.\n";

} // namespace

int runTurnCheck(int argc, char** argv) {
    ArgScanner args("turn-check", argc, argv);
    ServerOptions servers;
    bool json = false;
    double timeout = 5;
    for (; !args.done(); args.next()) {
        if (auto handled = servers.handle(args)) {
            if (*handled != kExitOk)
                return *handled;
        } else if (args.is("-h") || args.is("--help")) {
            std::printf("%s", kHelp);
            return kExitOk;
        } else if (args.is("--json")) {
            if (!args.flag())
                return kExitUsage;
            json = true;
        } else if (args.is("--timeout")) {
            if (!args.number(timeout, 0.1, 3600))
                return kExitUsage;
        } else {
            return args.unknown();
        }
    }
    if (servers.turn.size() != 1 || !servers.stun.empty())
        return args.usageError("give exactly one --turn URI");
    std::vector<TurnServer> turns;
    if (!servers.build(args, turns))
        return kExitUsage;
    const TurnServer& server = turns.front();
    const ServerUri& uri = server.uri;
    auto limit = std::chrono::milliseconds(static_cast<long>(timeout * 1000));

    auto fail = [&](const std::string& message) {
        if (json)
            emitLine(stdout, "{\"ok\":false,\"uri\":" + jsonString(uri.toString()) +
                                 ",\"error\":" + jsonString(message) + "}");
        std::fprintf(stderr, "icepunch turn-check: %s: %s\n", uri.toString().c_str(),
                     message.c_str());
        return kExitFailure;
    };

    auto ip = impl::resolveHost(uri.host, true, true);
    if (!ip)
        return fail(ip.error().message);
    impl::ProbeEndpoint endpoint{*ip, uri.port, uri.effectiveTransport()};
    std::mutex bridgeMutex;
    std::string bridgeError;
    std::unique_ptr<impl::TlsBridge> bridge;
    if (uri.isSecure()) {
        impl::TlsBridgeOptions tls;
        tls.serverAddress = *ip;
        tls.serverPort = uri.port;
        tls.serverName = uri.host;
        tls.tls = server.tls;
        tls.handshakeTimeout = limit;
        tls.onError = [&](const std::string& error) {
            std::lock_guard lock(bridgeMutex);
            if (bridgeError.empty())
                bridgeError = error;
        };
        auto started = impl::TlsBridge::start(tls);
        if (!started)
            return fail(started.error().message);
        bridge = std::move(*started);
        endpoint = {bridge->localAddress(), bridge->localPort(), Transport::Tcp};
    }
    if (!json && stderrIsTerminal())
        std::fprintf(stderr, "  ... checking %s\n", uri.toString().c_str());
    TurnCredentials creds = server.credentials();
    auto r = impl::turnRelayCheck(endpoint, creds.username, creds.password, limit);
    bridge.reset(); // joins the bridge thread: bridgeError is final
    if (!r.ok) {
        std::string message = r.message;
        if (!bridgeError.empty())
            message = bridgeError;
        return fail(message);
    }
    auto relayRtt = r.rtt1to2 + r.rtt2to1;
    const char* transport = uri.isSecure()                               ? "TLS"
                            : uri.effectiveTransport() == Transport::Tcp ? "TCP"
                                                                         : "UDP";
    if (json) {
        emitLine(stdout,
                 "{\"ok\":true,\"uri\":" + jsonString(uri.toString()) +
                     ",\"transport\":" + jsonString(transport) + ",\"relayed\":" +
                     jsonString(endpointText(r.first.relayedAddress, r.first.relayedPort)) +
                     ",\"relayed_second\":" +
                     jsonString(endpointText(r.second.relayedAddress, r.second.relayedPort)) +
                     ",\"mapped\":" +
                     jsonString(endpointText(r.first.mappedAddress, r.first.mappedPort)) +
                     ",\"lifetime_s\":" + std::to_string(r.first.lifetime.count()) +
                     ",\"allocate_rtt_ms\":" + millisText(r.first.rtt) +
                     ",\"relay_rtt_ms\":" + millisText(relayRtt) +
                     ",\"released\":" + (r.released ? "true" : "false") + "}");
    } else {
        std::printf("%s over %s: relayed both ways\n", uri.toString().c_str(), transport);
        std::printf("  relayed address   %s (second allocation %s)\n",
                    endpointText(r.first.relayedAddress, r.first.relayedPort).c_str(),
                    endpointText(r.second.relayedAddress, r.second.relayedPort).c_str());
        std::printf("  mapped address    %s\n",
                    endpointText(r.first.mappedAddress, r.first.mappedPort).c_str());
        std::printf("  lifetime          %lld s\n",
                    static_cast<long long>(r.first.lifetime.count()));
        std::printf("  allocate RTT      %s ms\n", millisText(r.first.rtt).c_str());
        std::printf("  RTT via relay     %s ms (1->2 %s ms, 2->1 %s ms)\n",
                    millisText(relayRtt).c_str(), millisText(r.rtt1to2).c_str(),
                    millisText(r.rtt2to1).c_str());
        std::printf("  released          %s\n", r.released ? "yes" : "no");
    }
    return kExitOk;
}

} // namespace icepunch::cli
