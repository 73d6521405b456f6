// icepunch lab: runs the NAT-lab matrix (every pair of router kinds, in network namespaces) and
// prints the grid; without root it says why and runs the loopback demo instead.
#include "commands.hpp"

#include <unistd.h>

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace icepunch::cli {

namespace {

namespace fs = std::filesystem;

constexpr const char* kHelp =
    "usage: icepunch lab [--out DIR] [--filter PATTERN]\n"
    "\n"
    "Builds a NAT lab out of Linux network namespaces and nftables (tests/natlab/lab.sh): two\n"
    "hosts behind routers of every kind (full cone, restricted cone, port-restricted cone,\n"
    "symmetric, UDP blocked), plus double NAT, two hosts behind one NAT and 20%% loss, with a\n"
    "coturn on the lab's public side. It first proves each router kind with coturn's\n"
    "turnutils_natdiscovery, then connects two icepunch agents in every cell, checks the path\n"
    "(direct where hole punching can work, relayed where it cannot), sends 1,000 datagrams each\n"
    "way, and prints the grid with the time to connected of each peer.\n"
    "\n"
    "  --out DIR        keep cells.jsonl, grid.md and grid.svg in DIR (default: a temp dir)\n"
    "  --filter PATTERN only cells whose name matches the gtest pattern, e.g. '*symmetric*'\n"
    "\n"
    "Needs root. Without it, says so and runs `icepunch demo` (loopback) instead.\n"
    "Runs from a build tree: it uses the matrix program built beside this one.\n"
    "Exit status: 0 every cell passed, 1 a cell failed or the lab could not run, 2 usage.\n";

bool shellSafe(const std::string& s) {
    for (char c : s) {
        if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("/._-*:?", c))) {
            return false;
        }
    }
    return !s.empty();
}

} // namespace

int runLab(int argc, char** argv) {
    std::string outDir;
    std::string filter;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::printf(kHelp);
            return 0;
        }
        if ((arg == "--out" || arg == "--filter") && i + 1 < argc) {
            (arg == "--out" ? outDir : filter) = argv[++i];
            continue;
        }
        std::fprintf(stderr, "icepunch lab: unknown or incomplete option \"%s\" (see --help)\n",
                     arg.c_str());
        return 2;
    }
    if (geteuid() != 0) {
        std::fprintf(stderr, "icepunch lab: the NAT lab needs root (it creates network namespaces "
                             "and nftables rules); running the loopback demo instead.\n");
        char name[] = "demo";
        char* demoArgv[] = {name, nullptr};
        return runDemo(1, demoArgv);
    }
    const fs::path source = ICEPUNCH_SOURCE_ROOT;
    const fs::path build = ICEPUNCH_BUILD_ROOT;
    const fs::path matrix = build / "tests/natlab/natlab_matrix_test";
    const fs::path labSh = source / "tests/natlab/lab.sh";
    const fs::path render = source / "tests/natlab/render_grid.py";
    for (const auto& p : {matrix, labSh, render}) {
        if (!fs::exists(p)) {
            std::fprintf(stderr,
                         "icepunch lab: %s is missing: the lab runs from a build tree with "
                         "tests enabled (meson setup build && ninja -C build)\n",
                         p.c_str());
            return 1;
        }
    }
    bool keep = !outDir.empty();
    if (!keep) {
        char tmpl[] = "/tmp/icepunch-lab-XXXXXX";
        if (!mkdtemp(tmpl)) {
            std::fprintf(stderr, "icepunch lab: cannot make a temporary directory\n");
            return 1;
        }
        outDir = tmpl;
    }
    fs::create_directories(outDir);
    const fs::path cells = fs::path(outDir) / "cells.jsonl";
    fs::remove(cells);
    if (!shellSafe(outDir) || (!filter.empty() && !shellSafe(filter))) {
        std::fprintf(stderr, "icepunch lab: --out and --filter take plain paths and patterns\n");
        return 2;
    }
    setenv("ICEPUNCH_NATLAB_OUT", cells.c_str(), 1);
    setenv("ICEPUNCH_NATLAB_LAB", labSh.c_str(), 1);
    std::string command = "'" + matrix.string() + "'";
    if (!filter.empty()) {
        command += " --gtest_filter='Cells/Matrix.Connects/" + filter + "'";
    }
    command += " 2>&1";
    std::fprintf(stderr, "icepunch lab: proving the router kinds, then running the cells...\n");
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) {
        std::fprintf(stderr, "icepunch lab: cannot run %s\n", matrix.c_str());
        return 1;
    }
    // Show what matters as it happens: each cell's result and any failure.
    char line[8192];
    while (std::fgets(line, sizeof line, pipe)) {
        if (std::strncmp(line, "[       OK ] Cells/", 19) == 0 ||
            std::strncmp(line, "[  FAILED  ]", 12) == 0 || std::strstr(line, "Failure") ||
            std::strncmp(line, "[  SKIPPED ]", 12) == 0 || std::strstr(line, "natlab:")) {
            std::fputs(line, stderr);
        }
    }
    int status = pclose(pipe);
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
    if (fs::exists(cells) && fs::file_size(cells) > 0) {
        std::string renderCommand = "python3 '" + render.string() + "' '" + cells.string() +
                                    "' --out '" + outDir + "' >/dev/null && cat '" + outDir +
                                    "/grid.md'";
        if (std::system(renderCommand.c_str()) != 0) {
            std::fprintf(stderr, "icepunch lab: could not render the grid\n");
        }
    }
    if (rc == 77) {
        std::fprintf(stderr, "icepunch lab: network namespaces are unavailable here; running "
                             "the loopback demo instead.\n");
        char name[] = "demo";
        char* demoArgv[] = {name, nullptr};
        return runDemo(1, demoArgv);
    }
    if (keep) {
        std::fprintf(stderr, "icepunch lab: results in %s\n", outDir.c_str());
    } else {
        fs::remove_all(outDir);
    }
    return rc == 0 ? 0 : 1;
}

} // namespace icepunch::cli
