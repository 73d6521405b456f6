// icepunch nat: RFC 5780 NAT behaviour discovery against one STUN server.
#include "commands.hpp"
#include "options.hpp"

#include "impl/net_util.hpp"
#include "impl/stun_nat.hpp"

#include <icepunch/icepunch.hpp>

#include <cstdio>
#include <string>

namespace icepunch::cli {

namespace {

const char* const kHelp =
    "usage: icepunch nat --server URI [options]\n"
    "\n"
    "Discovers the NAT between this host and a STUN server (RFC 5780, over UDP): the mapping\n"
    "and filtering behaviours (endpoint-independent, address-dependent,\n"
    "address-and-port-dependent), hairpinning, the classic RFC 3489 name (open internet,\n"
    "full cone, restricted cone, port-restricted cone, symmetric, UDP blocked) and, with\n"
    "--lifetime, how long an idle binding lives. The server must have two addresses and\n"
    "send OTHER-ADDRESS (coturn with two -L and --alt-listening-port); against one that does\n"
    "not, only the mapped address and whether there is a NAT are reported.\n"
    "Each filtering test runs on a fresh socket that has only talked to the primary address,\n"
    "before the mapping tests reach the other address. An answer that does not come from\n"
    "where the test asked (OTHER-ADDRESS for change IP and port, the primary IP and the other\n"
    "port for change port, else the address sent to) is not counted and a note says so;\n"
    "what the counted answers cannot tell is \"unknown\".\n"
    "\n"
    "options:\n"
    "  --server URI        stun:host[:port] (or turn:, UDP)\n"
    "  --timeout S         wait this long for each test's answer (default 2); an unanswered\n"
    "                      filtering test counts as filtered\n"
    "  --local ADDR        bind this local address\n"
    "  --no-hairpin        skip the hairpinning test\n"
    "  --lifetime          also measure the binding lifetime (idle bindings probed in\n"
    "                      parallel, then refined; takes up to twice --lifetime-max)\n"
    "  --lifetime-max S    longest idle time tried (default 60)\n"
    "  --json              one JSON object on one line\n"
    "  -h, --help          this text\n"
    "\n"
    "exit status: 0 the server answered, 1 no answer (UDP blocked or server down) or\n"
    "another failure, 2 usage error.\n";

std::string optionalBool(const std::optional<bool>& b, const char* yes, const char* no) {
    return b ? (*b ? yes : no) : "unknown";
}

} // namespace

int runNat(int argc, char** argv) {
    ArgScanner args("nat", argc, argv);
    std::optional<ServerUri> server;
    impl::NatDiscoveryOptions options;
    bool json = false;
    for (; !args.done(); args.next()) {
        std::string text;
        if (args.is("-h") || args.is("--help")) {
            std::printf("%s", kHelp);
            return kExitOk;
        } else if (args.is("--server")) {
            if (!args.value(text))
                return kExitUsage;
            auto uri = ServerUri::parse(text);
            if (!uri)
                return args.usageError("bad --server URI \"" + text + "\": " + uri.error().message);
            if (uri->isSecure() || uri->effectiveTransport() != Transport::Udp)
                return args.usageError("NAT discovery runs over UDP: give a stun: URI");
            server = *uri;
        } else if (args.is("--timeout")) {
            double s = 0;
            if (!args.number(s, 0.05, 600))
                return kExitUsage;
            options.testTimeout = std::chrono::milliseconds(static_cast<long>(s * 1000));
        } else if (args.is("--local")) {
            if (!args.value(options.localAddress))
                return kExitUsage;
        } else if (args.is("--no-hairpin")) {
            if (!args.flag())
                return kExitUsage;
            options.hairpinning = false;
        } else if (args.is("--lifetime")) {
            if (!args.flag())
                return kExitUsage;
            options.lifetime = true;
        } else if (args.is("--lifetime-max")) {
            long s = 0;
            if (!args.integer(s, 1, 3600))
                return kExitUsage;
            options.lifetimeMax = std::chrono::seconds(s);
        } else if (args.is("--json")) {
            if (!args.flag())
                return kExitUsage;
            json = true;
        } else {
            return args.unknown();
        }
    }
    if (!server)
        return args.usageError("--server URI is required");
    auto ip = impl::resolveHost(server->host, true, true);
    if (!ip) {
        std::fprintf(stderr, "icepunch nat: %s\n", ip.error().message.c_str());
        return kExitFailure;
    }
    options.serverAddress = *ip;
    options.serverPort = server->port;
    if (!json && stderrIsTerminal())
        std::fprintf(stderr, "  ... testing against %s%s\n", server->toString().c_str(),
                     options.lifetime ? " (the lifetime takes a while)" : "");
    auto r = impl::discoverNat(options);

    std::string lifetime;
    if (options.lifetime) {
        if (!r.lifetimeNote.empty())
            lifetime = "unknown: " + r.lifetimeNote;
        else if (!r.behindNat && !r.lifetimeGone)
            lifetime = "no expiry seen within " + std::to_string(options.lifetimeMax.count()) +
                       " s (no NAT)";
        else if (r.lifetimeGone && r.lifetimeAlive)
            lifetime = "between " + std::to_string(r.lifetimeAlive->count()) + " and " +
                       std::to_string(r.lifetimeGone->count()) + " s";
        else if (r.lifetimeAlive)
            lifetime = "longer than " + std::to_string(r.lifetimeAlive->count()) + " s";
        else
            lifetime = "unknown";
    }
    if (json) {
        std::string line = "{\"ok\":" + std::string(r.ok ? "true" : "false") +
                           ",\"server\":" + jsonString(server->toString());
        if (!r.ok)
            line += ",\"error\":" + jsonString(r.error);
        line += ",\"udp_blocked\":" + std::string(r.udpBlocked ? "true" : "false");
        if (r.ok) {
            line += ",\"local\":" + jsonString(endpointText(r.localAddress, r.localPort)) +
                    ",\"mapped\":" + jsonString(endpointText(r.mappedAddress, r.mappedPort)) +
                    ",\"behind_nat\":" + (r.behindNat ? "true" : "false") +
                    ",\"rfc5780\":" + (r.rfc5780 ? "true" : "false");
            if (r.rfc5780)
                line += ",\"other\":" + jsonString(endpointText(r.otherAddress, r.otherPort));
            line += ",\"mapping\":" + jsonString(toString(r.mapping)) +
                    ",\"filtering\":" + jsonString(toString(r.filtering)) + ",\"hairpinning\":" +
                    (r.hairpinning ? (*r.hairpinning ? "true" : "false") : "null");
        }
        line += ",\"nat_type\":" + (r.classicName.empty() ? "null" : jsonString(r.classicName));
        if (options.lifetime) {
            line += ",\"lifetime_alive_s\":" +
                    (r.lifetimeAlive ? std::to_string(r.lifetimeAlive->count()) : "null") +
                    ",\"lifetime_gone_s\":" +
                    (r.lifetimeGone ? std::to_string(r.lifetimeGone->count()) : "null") +
                    ",\"lifetime\":" + jsonString(lifetime);
        }
        line += ",\"notes\":[";
        for (std::size_t i = 0; i < r.notes.size(); ++i) {
            if (i) // appended separately: g++ 12 -O3 warns (-Wrestrict) on ("," + string)
                line += ',';
            line += jsonString(r.notes[i]);
        }
        emitLine(stdout, line + "]}");
    } else {
        std::printf("server          %s\n", server->toString().c_str());
        if (r.ok) {
            std::printf("local address   %s\n", endpointText(r.localAddress, r.localPort).c_str());
            std::printf("mapped address  %s\n",
                        endpointText(r.mappedAddress, r.mappedPort).c_str());
            std::printf("behind NAT      %s\n", r.behindNat ? "yes" : "no");
            std::printf(
                "RFC 5780        %s\n",
                r.rfc5780
                    ? ("yes, other address " + endpointText(r.otherAddress, r.otherPort)).c_str()
                    : "no (no OTHER-ADDRESS in the Binding response)");
            if (r.rfc5780) {
                std::printf("mapping         %s\n", std::string(toString(r.mapping)).c_str());
                std::printf("filtering       %s\n", std::string(toString(r.filtering)).c_str());
                std::printf("hairpinning     %s\n",
                            optionalBool(r.hairpinning, "yes", "no").c_str());
            }
        }
        std::printf("NAT type        %s\n",
                    r.classicName.empty() ? "unknown" : r.classicName.c_str());
        if (options.lifetime)
            std::printf("binding life    %s\n", lifetime.c_str());
        for (const auto& note : r.notes)
            std::printf("note            %s\n", note.c_str());
    }
    std::fflush(stdout);
    if (!r.ok) {
        std::fprintf(stderr, "icepunch nat: %s\n", r.error.c_str());
        return kExitFailure;
    }
    return kExitOk;
}

} // namespace icepunch::cli
