#pragma once

// Shared pieces of the subcommands: argument scanning, server options, output helpers.

#include <icepunch/config.hpp>
#include <icepunch/result.hpp>
#include <icepunch/server_uri.hpp>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace icepunch::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// Walks argv (argv[0] is the subcommand) accepting "--name value" and "--name=value".
class ArgScanner {
public:
    ArgScanner(const char* command, int argc, char** argv);

    bool done() const { return index_ >= argc_; }
    // The current argument's name (the part before '=').
    std::string_view name() const { return name_; }
    bool is(std::string_view option) const { return name_ == option; }
    // The value of the current option; false (and a usage error printed) when it is missing.
    bool value(std::string& out);
    bool number(double& out, double min, double max);
    bool integer(long& out, long min, long max);
    // For options without a value: false (usage error printed) if "--flag=x" was given.
    bool flag();
    void next();
    // Prints "icepunch <command>: <message>" to stderr and returns kExitUsage.
    int usageError(const std::string& message) const;
    int unknown() const;

private:
    void load();
    const char* command_;
    int argc_;
    char** argv_;
    int index_ = 1;
    std::string_view name_;
    std::optional<std::string> inlineValue_;
    bool consumedValue_ = false;
};

// --stun / --turn / --user / --pass / --secret / --ca, shared by gather and connect; credentials
// given after a --turn apply to it, those given before any --turn to every --turn.
struct ServerOptions {
    std::vector<ServerUri> stun;
    struct Turn {
        ServerUri uri;
        std::optional<std::string> user, pass, secret;
    };
    std::vector<Turn> turn;
    std::optional<std::string> user, pass, secret;
    std::string caFile;

    // Handles the option under the scanner if it is one of ours. Returns nullopt when it is not
    // ours, else the exit status to stop with (kExitUsage) or kExitOk to continue.
    std::optional<int> handle(ArgScanner& args);
    // Checks and builds the TURN servers; a usage error is printed and false returned.
    bool build(const ArgScanner& args, std::vector<TurnServer>& out) const;
};

extern const char* const kServerOptionsHelp;

// JSON string literal with quotes.
std::string jsonString(std::string_view text);

// Writes `text` to stream atomically from the reader's point of view: one fwrite and a flush.
void emitLine(FILE* stream, const std::string& text);

bool stderrIsTerminal();
// "ip:port", IPv6 in brackets.
std::string endpointText(const std::string& host, uint16_t port);
std::string millisText(std::chrono::microseconds duration);

} // namespace icepunch::cli
