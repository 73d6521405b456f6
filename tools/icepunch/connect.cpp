// icepunch connect: one ICE agent; descriptions are exchanged through files or stdin/stdout,
// then the connection carries stdin/stdout (netcat over ICE), an echo, pings or a benchmark.
#include "commands.hpp"
#include "options.hpp"

#include <icepunch/icepunch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace icepunch::cli {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const char* const kHelp =
    "usage: icepunch connect --role controlling|controlled\n"
    "                        (--local-file F --remote-file F | --stdio) [options]\n"
    "\n"
    "Gathers candidates, hands its ICE description (RFC 8839 a= lines, a=end-of-candidates\n"
    "last) to the peer, reads the peer's, connects and reports the selected pair. Then it\n"
    "is netcat over ICE: stdin goes to the peer, what arrives goes to stdout; it exits once\n"
    "stdin has closed and the peer has said it is done too (or on --timeout). Data travels as\n"
    "UDP datagrams (up to 1000 bytes of stdin each), without retransmission. Both ends must\n"
    "be icepunch connect.\n"
    "\n"
    "exchange (one of):\n"
    "  --local-file F      write our description to F (atomically, once gathering is done)\n"
    "  --remote-file F     read the peer's from F; waits for it to appear (the peer may start\n"
    "                      later) until it ends in a=end-of-candidates\n"
    "  --stdio             write ours to stdout, read the peer's from stdin up to the line\n"
    "                      a=end-of-candidates; data follows on the same streams\n"
    "\n"
    "options:\n"
    "  --role R            controlling or controlled (one side each; required)\n"
    "%s"
    "  --relay-only        use relayed candidates only (needs --turn)\n"
    "  --interface X       gather on this interface name or local address only (repeatable;\n"
    "                      loopback such as 127.0.0.1 only when listed)\n"
    "  --json              print exactly one line {\"connected\":true,\"ms_to_connected\":N,\n"
    "                      \"local_type\":...,\"remote_type\":...,\"local\":...,\"remote\":...}\n"
    "                      (or {\"connected\":false,\"error\":...}) on stdout; without it the\n"
    "                      result goes to stderr as one sentence\n"
    "  --echo              send back whatever arrives (stdin is not read); exits when the\n"
    "                      peer is done\n"
    "  --ping N            send N timestamped pings (100 ms apart) to a peer and print RTT\n"
    "                      min/median/max\n"
    "  --bench S           send and receive for S seconds at once and print the throughput\n"
    "                      both ways (the peer sends back while it receives)\n"
    "  --timeout S         give up after S seconds in all: waiting for the peer's\n"
    "                      description, connecting and the data phase (default: 60 s for the\n"
    "                      description, 30 s to connect, no limit for data)\n"
    "  -h, --help          this text\n"
    "\n"
    "ms_to_connected counts from having the peer's description to the selected pair.\n"
    "exit status: 0 connected (and pings answered), 1 not connected or another failure,\n"
    "2 usage error.\n";

constexpr std::size_t kChunk = 1000;
constexpr std::size_t kBenchChunk = 1100;

// Frame types: the first byte of every datagram.
constexpr char kData = 'D';
constexpr char kEnd = 'E';
constexpr char kPing = 'P';
constexpr char kPong = 'Q';
constexpr char kBench = 'B';
constexpr char kBenchStart = 'S';
constexpr char kBenchReport = 'R';
constexpr char kBenchResult = 'r';
constexpr char kHello = 'H';      // "I am connected", answered with kHelloReply
constexpr char kHelloReply = 'h'; // "so am I"; not answered

// Buffered reads of fd 0: description lines first (in --stdio mode), then raw data.
class StdinReader {
public:
    // One line without its end, or nullopt on EOF / deadline / stop.
    std::optional<std::string> readLine(Clock::time_point until) {
        for (;;) {
            auto nl = buffer_.find('\n');
            if (nl != std::string::npos) {
                std::string line = buffer_.substr(0, nl);
                buffer_.erase(0, nl + 1);
                if (!line.empty() && line.back() == '\r')
                    line.pop_back();
                return line;
            }
            if (eof_ || !fill(until))
                return std::nullopt;
        }
    }
    // Up to max bytes; empty with eof() on end of input; empty otherwise when nothing came
    // within the slice.
    std::string readSome(std::size_t max, std::chrono::milliseconds slice) {
        if (buffer_.empty() && !eof_)
            fill(Clock::now() + slice);
        std::string out = buffer_.substr(0, std::min(max, buffer_.size()));
        buffer_.erase(0, out.size());
        return out;
    }
    bool eof() const { return eof_ && buffer_.empty(); }

private:
    bool fill(Clock::time_point until) {
        auto now = Clock::now();
        int ms =
            now >= until
                ? 0
                : static_cast<int>(
                      std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count()) +
                      1;
        pollfd pfd{STDIN_FILENO, POLLIN, 0};
        int n = ::poll(&pfd, 1, std::min(ms, 100));
        if (n <= 0)
            return n == 0 && Clock::now() < until;
        char chunk[65536];
        ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            return true;
        if (got <= 0) {
            eof_ = true;
            return false;
        }
        buffer_.append(chunk, static_cast<std::size_t>(got));
        return true;
    }
    std::string buffer_;
    bool eof_ = false;
};

struct Options {
    Role role = Role::Controlling;
    bool roleGiven = false;
    std::string localFile, remoteFile;
    bool stdio = false;
    bool json = false;
    bool echo = false;
    long ping = 0;
    double bench = 0;
    std::optional<double> timeout;
};

struct Session {
    std::mutex mutex;
    std::condition_variable changed;
    bool gatheringDone = false;
    std::optional<CandidatePair> pair;
    std::optional<Clock::time_point> connectedAt;
    std::optional<Failure> failure;
    bool peerEnded = false;
    bool peerReady = false; // the peer is connected too, so it can answer
    std::vector<double> rttsMs;
    uint64_t benchBytes = 0;
    std::optional<Clock::time_point> benchFirst, benchLast;
    std::optional<uint64_t> peerBenchBytes;
    std::optional<double> peerBenchSeconds;
    std::optional<double> peerBenchRequest; // seconds asked for by the peer
};

uint64_t nowNs() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count());
}

template <typename T> void put(std::string& out, T value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof value);
}
template <typename T> bool get(std::span<const std::byte> in, std::size_t at, T& value) {
    if (in.size() < at + sizeof value)
        return false;
    std::memcpy(&value, in.data() + at, sizeof value);
    return true;
}

bool writeAll(int fd, const void* data, std::size_t length) {
    auto* p = static_cast<const char*>(data);
    while (length > 0) {
        ssize_t n = ::write(fd, p, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        p += n;
        length -= static_cast<std::size_t>(n);
    }
    return true;
}

bool writeFileAtomically(const std::string& path, const std::string& text, std::string& error) {
    std::string temp = path + ".tmp." + std::to_string(::getpid());
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        error = "cannot write \"" + temp + "\": " + std::strerror(errno);
        return false;
    }
    bool ok = writeAll(fd, text.data(), text.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
        error = "cannot write \"" + path + "\": " + std::strerror(errno);
        ::unlink(temp.c_str());
        return false;
    }
    return true;
}

bool hasEndOfCandidates(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        if (line == "a=end-of-candidates" || line == "end-of-candidates")
            return true;
    }
    return false;
}

int parseOptions(ArgScanner& args, ServerOptions& servers, AgentConfig& config, Options& o) {
    bool relayOnly = false;
    for (; !args.done(); args.next()) {
        std::string text;
        if (auto handled = servers.handle(args)) {
            if (*handled != kExitOk)
                return *handled;
        } else if (args.is("-h") || args.is("--help")) {
            std::printf(kHelp, kServerOptionsHelp);
            return -1;
        } else if (args.is("--role")) {
            if (!args.value(text))
                return kExitUsage;
            if (text != "controlling" && text != "controlled")
                return args.usageError("--role is controlling or controlled, not \"" + text + "\"");
            o.role = text == "controlling" ? Role::Controlling : Role::Controlled;
            o.roleGiven = true;
        } else if (args.is("--local-file")) {
            if (!args.value(o.localFile))
                return kExitUsage;
        } else if (args.is("--remote-file")) {
            if (!args.value(o.remoteFile))
                return kExitUsage;
        } else if (args.is("--stdio") || args.is("--json") || args.is("--echo") ||
                   args.is("--relay-only")) {
            if (!args.flag())
                return kExitUsage;
            (args.is("--stdio")  ? o.stdio
             : args.is("--json") ? o.json
             : args.is("--echo") ? o.echo
                                 : relayOnly) = true;
        } else if (args.is("--ping")) {
            if (!args.integer(o.ping, 1, 100000))
                return kExitUsage;
        } else if (args.is("--bench")) {
            if (!args.number(o.bench, 0.1, 3600))
                return kExitUsage;
        } else if (args.is("--timeout")) {
            double t = 0;
            if (!args.number(t, 0.1, 86400))
                return kExitUsage;
            o.timeout = t;
        } else if (args.is("--interface")) {
            if (!args.value(text))
                return kExitUsage;
            config.interfaces.push_back(text);
        } else {
            return args.unknown();
        }
    }
    if (!o.roleGiven)
        return args.usageError("--role controlling|controlled is required");
    if (o.stdio && (!o.localFile.empty() || !o.remoteFile.empty()))
        return args.usageError("--stdio excludes --local-file and --remote-file");
    if (!o.stdio && (o.localFile.empty() || o.remoteFile.empty()))
        return args.usageError("give --local-file and --remote-file, or --stdio");
    if ((o.echo ? 1 : 0) + (o.ping ? 1 : 0) + (o.bench > 0 ? 1 : 0) > 1)
        return args.usageError("--echo, --ping and --bench exclude each other");
    if (relayOnly && servers.turn.empty())
        return args.usageError("--relay-only needs a --turn server");
    if (!servers.build(args, config.turnServers))
        return kExitUsage;
    config.stunServers = servers.stun;
    config.role = o.role;
    config.policy = relayOnly ? CandidatePolicy::RelayOnly : CandidatePolicy::All;
    return kExitOk;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

} // namespace

int runConnect(int argc, char** argv) {
    ArgScanner args("connect", argc, argv);
    ServerOptions servers;
    AgentConfig config;
    Options o;
    if (int rc = parseOptions(args, servers, config, o); rc != kExitOk)
        return rc < 0 ? kExitOk : rc;

    const auto start = Clock::now();
    // Clock::time_point::max() when there is no --timeout.
    const Clock::time_point hardDeadline =
        o.timeout ? start + std::chrono::milliseconds(static_cast<long>(*o.timeout * 1000))
                  : Clock::time_point::max();
    auto deadlineOr = [&](std::chrono::milliseconds fallback) {
        return std::min(hardDeadline, Clock::now() + fallback);
    };
    if (o.timeout)
        config.connectTimeout =
            std::chrono::duration_cast<std::chrono::milliseconds>(hardDeadline - Clock::now());
    const bool progress = stderrIsTerminal();
    auto say = [&](const char* text) {
        if (progress)
            std::fprintf(stderr, "  ... %s\n", text);
    };

    Session s;
    std::unique_ptr<Agent> agent;
    StreamId stream = 0;
    std::atomic<bool> stdoutBroken{false};

    auto sendFrame = [&](const std::string& frame) {
        return agent->send(stream, 1, frame);
    };

    Agent::Callbacks cb;
    cb.gatheringDone = [&](StreamId) {
        std::lock_guard lock(s.mutex);
        s.gatheringDone = true;
        s.changed.notify_all();
    };
    cb.stateChanged = [&](StreamId, ComponentId, ComponentState state) {
        std::lock_guard lock(s.mutex);
        if ((state == ComponentState::Connected || state == ComponentState::Completed) &&
            !s.connectedAt)
            s.connectedAt = Clock::now();
        s.changed.notify_all();
    };
    cb.selectedPairChanged = [&](StreamId, ComponentId, const CandidatePair& pair) {
        std::lock_guard lock(s.mutex);
        s.pair = pair;
        s.changed.notify_all();
    };
    cb.failed = [&](StreamId, ComponentId, const Failure& failure) {
        std::lock_guard lock(s.mutex);
        s.failure = failure;
        s.changed.notify_all();
    };
    cb.received = [&](StreamId, ComponentId, std::span<const std::byte> data) {
        if (data.empty())
            return;
        char type = static_cast<char>(data[0]);
        auto body = data.subspan(1);
        switch (type) {
        case kData:
            if (o.echo) {
                (void)agent->send(stream, 1, data);
            } else if (!writeAll(STDOUT_FILENO, body.data(), body.size())) {
                stdoutBroken = true;
            }
            break;
        case kHello:
        case kHelloReply: {
            if (type == kHello)
                (void)sendFrame(std::string(1, kHelloReply));
            std::lock_guard lock(s.mutex);
            s.peerReady = true;
            s.changed.notify_all();
            break;
        }
        case kEnd: {
            std::lock_guard lock(s.mutex);
            s.peerEnded = true;
            s.changed.notify_all();
            break;
        }
        case kPing: {
            std::string pong(reinterpret_cast<const char*>(data.data()), data.size());
            pong[0] = kPong;
            (void)sendFrame(pong);
            break;
        }
        case kPong: {
            uint64_t sentNs = 0;
            if (get(body, 4, sentNs)) {
                std::lock_guard lock(s.mutex);
                s.rttsMs.push_back((nowNs() - sentNs) / 1e6);
                s.changed.notify_all();
            }
            break;
        }
        case kBench: {
            std::lock_guard lock(s.mutex);
            auto now = Clock::now();
            if (!s.benchFirst)
                s.benchFirst = now;
            s.benchLast = now;
            s.benchBytes += data.size();
            break;
        }
        case kBenchStart: {
            double seconds = 0;
            if (get(body, 0, seconds)) {
                std::lock_guard lock(s.mutex);
                if (!s.peerBenchRequest) {
                    s.peerBenchRequest = seconds;
                    s.changed.notify_all();
                }
            }
            break;
        }
        case kBenchReport: {
            std::string reply(1, kBenchResult);
            std::lock_guard lock(s.mutex);
            put(reply, s.benchBytes);
            double span = s.benchFirst
                              ? std::chrono::duration<double>(*s.benchLast - *s.benchFirst).count()
                              : 0.0;
            put(reply, span);
            (void)sendFrame(reply);
            break;
        }
        case kBenchResult: {
            uint64_t bytes = 0;
            double span = 0;
            if (get(body, 0, bytes) && get(body, 8, span)) {
                std::lock_guard lock(s.mutex);
                s.peerBenchBytes = bytes;
                s.peerBenchSeconds = span;
                s.changed.notify_all();
            }
            break;
        }
        default:
            break;
        }
    };

    auto fail = [&](const std::string& message) {
        if (o.json)
            emitLine(stdout, "{\"connected\":false,\"error\":" + jsonString(message) + "}");
        std::fprintf(stderr, "icepunch connect: %s\n", message.c_str());
        agent.reset();
        return kExitFailure;
    };

    auto created = Agent::create(config, cb);
    if (!created)
        return fail(created.error().message);
    agent = std::move(*created);
    auto added = agent->addStream(1);
    if (!added)
        return fail(added.error().message);
    stream = *added;
    say("gathering");
    if (auto st = agent->gather(stream); !st)
        return fail(st.error().message);
    {
        std::unique_lock lock(s.mutex);
        if (!s.changed.wait_until(lock, deadlineOr(config.gatherTimeout + 5s),
                                  [&] { return s.gatheringDone; }))
            return fail("gathering did not finish in time");
    }
    auto local = agent->localDescription(stream);
    if (!local)
        return fail(local.error().message);
    local->endOfCandidates = true;
    std::string localText = local->toString();
    if (o.stdio) {
        std::fwrite(localText.data(), 1, localText.size(), stdout);
        std::fflush(stdout);
    } else {
        std::string error;
        if (!writeFileAtomically(o.localFile, localText, error))
            return fail(error);
    }

    // The peer's description.
    say("waiting for the peer's description");
    StdinReader input;
    std::string remoteText;
    auto waitUntil = deadlineOr(60s);
    if (o.stdio) {
        bool complete = false;
        while (!complete) {
            auto line = input.readLine(waitUntil);
            if (!line) {
                if (input.eof() || Clock::now() >= waitUntil)
                    break;
                continue;
            }
            remoteText += *line + "\n";
            complete = *line == "a=end-of-candidates" || *line == "end-of-candidates";
        }
        if (!complete)
            return fail(input.eof() ? "stdin ended before the peer's a=end-of-candidates"
                                    : "no complete peer description on stdin in time");
    } else {
        bool complete = false;
        while (!complete) {
            std::ifstream in(o.remoteFile, std::ios::binary);
            if (in) {
                std::ostringstream content;
                content << in.rdbuf();
                remoteText = content.str();
                complete = hasEndOfCandidates(remoteText);
            }
            if (complete)
                break;
            if (Clock::now() >= waitUntil)
                return fail("no complete peer description in \"" + o.remoteFile + "\" in time");
            std::this_thread::sleep_for(50ms);
        }
    }
    auto remote = SessionDescription::parse(remoteText);
    if (!remote)
        return fail("the peer's description is malformed: " + remote.error().message);
    const auto checksStart = Clock::now();
    say("connecting");
    if (auto st = agent->setRemoteDescription(stream, *remote); !st)
        return fail(st.error().message);
    if (!remote->endOfCandidates)
        (void)agent->endOfRemoteCandidates(stream);
    CandidatePair pair;
    Clock::time_point connectedAt;
    {
        std::unique_lock lock(s.mutex);
        bool done = s.changed.wait_until(lock, deadlineOr(config.connectTimeout + 2s),
                                         [&] { return (s.connectedAt && s.pair) || s.failure; });
        if (s.failure)
            return fail("not connected: " + s.failure->message);
        if (!done)
            return fail("not connected: timed out");
        pair = *s.pair;
        connectedAt = *s.connectedAt;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(connectedAt - checksStart);
    if (o.json) {
        emitLine(stdout, "{\"connected\":true,\"ms_to_connected\":" + std::to_string(ms.count()) +
                             ",\"local_type\":" + jsonString(toString(pair.local.type)) +
                             ",\"remote_type\":" + jsonString(toString(pair.remote.type)) +
                             ",\"local\":" + jsonString(pair.local.endpoint()) +
                             ",\"remote\":" + jsonString(pair.remote.endpoint()) + "}");
    } else {
        std::fprintf(
            stderr, "icepunch connect: connected in %lld ms: local %s %s -> remote %s %s (%s)\n",
            static_cast<long long>(ms.count()), std::string(toString(pair.local.type)).c_str(),
            pair.local.endpoint().c_str(), std::string(toString(pair.remote.type)).c_str(),
            pair.remote.endpoint().c_str(), pair.isRelayed() ? "relayed" : "direct");
    }

    // The data phase starts once the peer is connected too: else its answers would be lost.
    auto dataDeadline = hardDeadline;
    for (auto until = deadlineOr(10s); Clock::now() < until;) {
        (void)sendFrame(std::string(1, kHello));
        std::unique_lock lock(s.mutex);
        if (s.changed.wait_for(lock, 50ms, [&] { return s.peerReady || s.failure; }))
            break;
    }
    auto sendEnd = [&] {
        for (int i = 0; i < 3; ++i)
            (void)sendFrame(std::string(1, kEnd));
    };
    auto failedNow = [&] {
        std::lock_guard lock(s.mutex);
        return s.failure.has_value();
    };
    int rc = kExitOk;
    if (o.ping > 0) {
        for (long i = 0; i < o.ping && Clock::now() < dataDeadline; ++i) {
            std::string frame(1, kPing);
            put(frame, static_cast<uint32_t>(i));
            put(frame, nowNs());
            (void)sendFrame(frame);
            std::unique_lock lock(s.mutex);
            s.changed.wait_until(lock, std::min(dataDeadline, Clock::now() + 100ms),
                                 [&] { return s.rttsMs.size() > static_cast<std::size_t>(i); });
        }
        std::unique_lock lock(s.mutex);
        s.changed.wait_until(lock, std::min(dataDeadline, Clock::now() + 1s),
                             [&] { return s.rttsMs.size() >= static_cast<std::size_t>(o.ping); });
        auto rtts = s.rttsMs;
        lock.unlock();
        if (rtts.empty()) {
            std::fprintf(stderr, "icepunch connect: no ping was answered\n");
            rc = kExitFailure;
        } else {
            double mn = *std::min_element(rtts.begin(), rtts.end());
            double mx = *std::max_element(rtts.begin(), rtts.end());
            char line[256];
            if (o.json)
                std::snprintf(line, sizeof line,
                              "{\"pings\":%ld,\"answered\":%zu,\"rtt_min_ms\":%.3f,"
                              "\"rtt_median_ms\":%.3f,\"rtt_max_ms\":%.3f}",
                              o.ping, rtts.size(), mn, median(rtts), mx);
            else
                std::snprintf(line, sizeof line,
                              "ping: %ld sent, %zu answered, RTT min/median/max %.3f/%.3f/%.3f ms",
                              o.ping, rtts.size(), mn, median(rtts), mx);
            emitLine(stdout, line);
        }
        sendEnd();
    } else if (o.bench > 0) {
        std::string startFrame(1, kBenchStart);
        put(startFrame, o.bench);
        for (int i = 0; i < 3; ++i)
            (void)sendFrame(startFrame);
        std::string chunk(kBenchChunk, 'x');
        chunk[0] = kBench;
        uint64_t sent = 0;
        auto benchStart = Clock::now();
        auto benchEnd =
            std::min(dataDeadline,
                     benchStart + std::chrono::milliseconds(static_cast<long>(o.bench * 1000)));
        while (Clock::now() < benchEnd) {
            if (sendFrame(chunk))
                sent += chunk.size();
            else
                std::this_thread::sleep_for(1ms);
        }
        double seconds = std::chrono::duration<double>(Clock::now() - benchStart).count();
        std::this_thread::sleep_for(200ms); // let the last datagrams land
        for (int i = 0; i < 20; ++i) {
            (void)sendFrame(std::string(1, kBenchReport));
            std::unique_lock lock(s.mutex);
            if (s.changed.wait_for(lock, 100ms, [&] { return s.peerBenchBytes.has_value(); }))
                break;
        }
        std::unique_lock lock(s.mutex);
        double upMbit = s.peerBenchBytes ? *s.peerBenchBytes * 8 / seconds / 1e6 : 0;
        double downSeconds =
            s.benchFirst ? std::chrono::duration<double>(*s.benchLast - *s.benchFirst).count() : 0;
        double downMbit = downSeconds > 0 ? s.benchBytes * 8 / downSeconds / 1e6 : 0;
        char line[320];
        if (o.json)
            std::snprintf(line, sizeof line,
                          "{\"seconds\":%.2f,\"sent_bytes\":%llu,\"peer_received_bytes\":%s,"
                          "\"up_mbit_s\":%.2f,\"received_bytes\":%llu,\"down_mbit_s\":%.2f}",
                          seconds, static_cast<unsigned long long>(sent),
                          s.peerBenchBytes ? std::to_string(*s.peerBenchBytes).c_str() : "null",
                          upMbit, static_cast<unsigned long long>(s.benchBytes), downMbit);
        else
            std::snprintf(line, sizeof line,
                          "bench: %.2f s, up: sent %llu B, peer got %s B = %.2f Mbit/s; "
                          "down: got %llu B = %.2f Mbit/s",
                          seconds, static_cast<unsigned long long>(sent),
                          s.peerBenchBytes ? std::to_string(*s.peerBenchBytes).c_str() : "?",
                          upMbit, static_cast<unsigned long long>(s.benchBytes), downMbit);
        lock.unlock();
        emitLine(stdout, line);
        if (!s.peerBenchBytes) {
            std::fprintf(stderr, "icepunch connect: the peer did not report what it received\n");
            rc = kExitFailure;
        }
        sendEnd();
    } else if (o.echo) {
        // Answer until the peer is done; a bench request makes us send back meanwhile.
        for (;;) {
            std::unique_lock lock(s.mutex);
            s.changed.wait_until(lock, std::min(dataDeadline, Clock::now() + 200ms), [&] {
                return s.peerEnded || s.failure || s.peerBenchRequest.has_value();
            });
            if (s.peerBenchRequest) {
                double seconds = *s.peerBenchRequest;
                s.peerBenchRequest = 0.0; // served; keep it set so it is not served again
                lock.unlock();
                std::string chunk(kBenchChunk, 'y');
                chunk[0] = kBench;
                auto until = std::min(
                    dataDeadline,
                    Clock::now() + std::chrono::milliseconds(static_cast<long>(seconds * 1000)));
                while (Clock::now() < until && !failedNow())
                    if (!sendFrame(chunk))
                        std::this_thread::sleep_for(1ms);
                lock.lock();
            }
            if (s.peerEnded || s.failure || Clock::now() >= dataDeadline)
                break;
        }
        sendEnd();
    } else {
        // netcat: stdin to the peer, the peer to stdout, until both sides are done.
        bool inputDone = false;
        while (Clock::now() < dataDeadline && !failedNow() && !stdoutBroken) {
            if (!inputDone) {
                std::string data = input.readSome(kChunk, 100ms);
                if (!data.empty()) {
                    std::string frame(1, kData);
                    frame += data;
                    while (!sendFrame(frame) && !failedNow() && Clock::now() < dataDeadline)
                        std::this_thread::sleep_for(1ms);
                } else if (input.eof()) {
                    inputDone = true;
                    sendEnd();
                }
            } else {
                std::unique_lock lock(s.mutex);
                s.changed.wait_until(lock, std::min(dataDeadline, Clock::now() + 200ms),
                                     [&] { return s.peerEnded || s.failure.has_value(); });
            }
            std::lock_guard lock(s.mutex);
            if (inputDone && s.peerEnded)
                break;
        }
    }
    {
        std::lock_guard lock(s.mutex);
        if (s.failure) {
            std::fprintf(stderr, "icepunch connect: connection lost: %s\n",
                         s.failure->message.c_str());
            rc = kExitFailure;
        }
    }
    agent.reset(); // no callback runs after this
    std::fflush(stdout);
    return rc;
}

} // namespace icepunch::cli
