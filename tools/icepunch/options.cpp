#include "options.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace icepunch::cli {

ArgScanner::ArgScanner(const char* command, int argc, char** argv)
    : command_(command), argc_(argc), argv_(argv) {
    load();
}

void ArgScanner::load() {
    inlineValue_.reset();
    consumedValue_ = false;
    if (done()) {
        name_ = {};
        return;
    }
    std::string_view arg = argv_[index_];
    auto eq = arg.find('=');
    if (arg.starts_with("--") && eq != std::string_view::npos) {
        name_ = arg.substr(0, eq);
        inlineValue_ = std::string(arg.substr(eq + 1));
    } else {
        name_ = arg;
    }
}

bool ArgScanner::value(std::string& out) {
    if (inlineValue_) {
        out = *inlineValue_;
        return true;
    }
    if (index_ + 1 >= argc_) {
        usageError(std::string(name_) + " needs a value");
        return false;
    }
    out = argv_[index_ + 1];
    consumedValue_ = true;
    return true;
}

bool ArgScanner::number(double& out, double min, double max) {
    std::string text;
    if (!value(text))
        return false;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
        usageError(std::string(name_) + " needs a number from " + std::to_string(min) + " to " +
                   std::to_string(max) + ", not \"" + text + "\"");
        return false;
    }
    out = v;
    return true;
}

bool ArgScanner::integer(long& out, long min, long max) {
    std::string text;
    if (!value(text))
        return false;
    char* end = nullptr;
    errno = 0;
    long v = std::strtol(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
        usageError(std::string(name_) + " needs a whole number from " + std::to_string(min) +
                   " to " + std::to_string(max) + ", not \"" + text + "\"");
        return false;
    }
    out = v;
    return true;
}

bool ArgScanner::flag() {
    if (inlineValue_) {
        usageError(std::string(name_) + " takes no value");
        return false;
    }
    return true;
}

void ArgScanner::next() {
    index_ += consumedValue_ ? 2 : 1;
    load();
}

int ArgScanner::usageError(const std::string& message) const {
    std::fprintf(stderr, "icepunch %s: %s (see icepunch %s --help)\n", command_, message.c_str(),
                 command_);
    return kExitUsage;
}

int ArgScanner::unknown() const {
    return usageError("unknown option \"" + std::string(name_) + "\"");
}

const char* const kServerOptionsHelp =
    "  --stun URI          STUN server, stun:host[:port] (repeatable)\n"
    "  --turn URI          TURN server, turn:host[:port][?transport=udp|tcp] or\n"
    "                      turns:host[:port] (TLS; repeatable)\n"
    "  --user U --pass P   long-term credentials for the --turn before them (given before\n"
    "                      any --turn: for every --turn)\n"
    "  --secret S          TURN REST shared secret (coturn --static-auth-secret) instead of\n"
    "                      --user/--pass: time-limited credentials are derived from it\n"
    "  --ca FILE           PEM file of CAs trusted for turns: (default: the system store)\n";

std::optional<int> ServerOptions::handle(ArgScanner& args) {
    std::string text;
    if (args.is("--stun") || args.is("--turn")) {
        if (!args.value(text))
            return kExitUsage;
        auto uri = ServerUri::parse(text);
        if (!uri)
            return args.usageError("bad " + std::string(args.name()) + " URI \"" + text +
                                   "\": " + uri.error().message);
        if (args.is("--stun")) {
            if (uri->isTurn())
                return args.usageError("\"" + text + "\" is a TURN URI: use --turn for it");
            stun.push_back(*uri);
        } else {
            if (!uri->isTurn())
                return args.usageError("\"" + text + "\" is not a turn: or turns: URI");
            turn.push_back({*uri, {}, {}, {}});
        }
        return kExitOk;
    }
    if (args.is("--user") || args.is("--pass") || args.is("--secret")) {
        if (!args.value(text))
            return kExitUsage;
        auto& slot = args.is("--user")   ? (turn.empty() ? user : turn.back().user)
                     : args.is("--pass") ? (turn.empty() ? pass : turn.back().pass)
                                         : (turn.empty() ? secret : turn.back().secret);
        slot = text;
        return kExitOk;
    }
    if (args.is("--ca")) {
        if (!args.value(caFile))
            return kExitUsage;
        if (::access(caFile.c_str(), R_OK) != 0)
            return args.usageError("cannot read the CA file \"" + caFile +
                                   "\": " + std::strerror(errno));
        return kExitOk;
    }
    return std::nullopt;
}

bool ServerOptions::build(const ArgScanner& args, std::vector<TurnServer>& out) const {
    for (const auto& t : turn) {
        TurnServer server;
        server.uri = t.uri;
        auto u = t.user ? t.user : user;
        auto p = t.pass ? t.pass : pass;
        auto s = t.secret ? t.secret : secret;
        if (s && (u || p)) {
            args.usageError("give --secret or --user/--pass for " + t.uri.toString() +
                            ", not both");
            return false;
        }
        if (s) {
            server.sharedSecret = *s;
        } else if (u && p) {
            server.username = *u;
            server.password = *p;
        } else {
            args.usageError(t.uri.toString() + " needs --user and --pass, or --secret");
            return false;
        }
        server.tls.caFile = caFile;
        out.push_back(std::move(server));
    }
    if (turn.empty() && (user || pass || secret)) {
        args.usageError("--user, --pass and --secret need a --turn server");
        return false;
    }
    return true;
}

std::string jsonString(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
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
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

void emitLine(FILE* stream, const std::string& text) {
    std::string line = text + "\n";
    std::fwrite(line.data(), 1, line.size(), stream);
    std::fflush(stream);
}

bool stderrIsTerminal() {
    return ::isatty(STDERR_FILENO) == 1;
}

std::string endpointText(const std::string& host, uint16_t port) {
    if (host.find(':') != std::string::npos)
        return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::string millisText(std::chrono::microseconds duration) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", duration.count() / 1000.0);
    return buf;
}

} // namespace icepunch::cli
