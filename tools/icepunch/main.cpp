// icepunch: the command-line tool. One file per subcommand.
#include "commands.hpp"

#include <icepunch/version.hpp>

#include <cstdio>
#include <cstring>
#include <string_view>

namespace {

struct Command {
    const char* name;
    int (*run)(int argc, char** argv);
    const char* summary;
};

const Command kCommands[] = {
    {"lab", icepunch::cli::runLab,
     "the NAT-lab matrix: every pair of NAT kinds in network namespaces (root)"},
    {"demo", icepunch::cli::runDemo,
     "two agents in this process connect through a coturn it starts on 127.0.0.1"},
    {"connect", icepunch::cli::runConnect,
     "connect to a peer over ICE (descriptions via files or stdio), then netcat, ping, bench"},
    {"gather", icepunch::cli::runGather,
     "gather candidates and report how each STUN/TURN server answered"},
    {"turn-check", icepunch::cli::runTurnCheck,
     "allocate twice on a TURN server and relay a payload both ways"},
    {"nat", icepunch::cli::runNat,
     "RFC 5780 NAT behaviour discovery: mapping, filtering, hairpinning, lifetime"},
};

void usage(FILE* out) {
    std::fprintf(out, "usage: icepunch <command> [options]\n\ncommands:\n");
    for (const auto& c : kCommands) {
        std::fprintf(out, "  %-12s %s\n", c.name, c.summary);
    }
    std::fprintf(out, "\nicepunch <command> --help shows a command's options.\n");
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    std::string_view name = argv[1];
    if (name == "--help" || name == "-h" || name == "help") {
        usage(stdout);
        return 0;
    }
    if (name == "--version") {
        std::printf("icepunch %s\n", icepunch::kVersion);
        return 0;
    }
    for (const auto& c : kCommands) {
        if (name == c.name) {
            return c.run(argc - 1, argv + 1);
        }
    }
    std::fprintf(stderr, "icepunch: unknown command \"%s\" (try icepunch --help)\n", argv[1]);
    return 2;
}
