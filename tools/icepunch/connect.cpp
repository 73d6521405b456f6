// icepunch connect: one ICE agent; descriptions are exchanged through files or stdin/stdout,
// then the connection carries raw datagrams: stdin lines out and datagrams to stdout (netcat over
// ICE), an echo, pings or a benchmark. No framing, so any ICE implementation that sends and echoes
// raw datagrams (interop/) can be the peer.
#include "commands.hpp"
#include "options.hpp"

#include <icepunch/icepunch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace icepunch::cli {

namespace {

// SIGUSR1 asks for an ICE restart (file mode): to try recovery and the restart contract by hand.
std::atomic<bool> g_restartRequested{false};

extern "C" void onRestartSignal(int) {
    g_restartRequested = true;
}

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const char* const kHelp =
    "usage: icepunch connect --role controlling|controlled\n"
    "                        (--local-file F --remote-file F | --stdio) [options]\n"
    "\n"
    "Gathers candidates, hands its ICE description (RFC 8839 a= lines, a=end-of-candidates\n"
    "last) to the peer, reads the peer's, connects and reports the selected pair. Then it\n"
    "carries raw UDP datagrams, without framing or retransmission, so the peer can be any ICE\n"
    "implementation that follows the same contract (another icepunch connect, aioice, werift,\n"
    "libnice ...):\n"
    "  - each line of stdin (with its \"\\n\"; longer lines in 1200-byte pieces) is sent as one\n"
    "    datagram; each datagram received is written to stdout as it is;\n"
    "  - at the end of stdin it keeps receiving until 500 ms pass without a datagram (at most\n"
    "    3 s), then exits;\n"
    "  - with --echo every datagram received is sent back unchanged instead.\n"
    "\n"
    "exchange (one of):\n"
    "  --local-file F      write our description to F, trickled: the credentials at once\n"
    "                      (atomically), each candidate appended as it is gathered,\n"
    "                      a=end-of-candidates last\n"
    "  --remote-file F     follow the peer's F as it grows: checks start on its credentials,\n"
    "                      each candidate line is used as it appears, until\n"
    "                      a=end-of-candidates (the peer may start later)\n"
    "                      ICE restart (RFC 8445 9): both files stay watched; a side that\n"
    "                      restarts (its path lost, or answering the peer's restart) writes\n"
    "                      its file anew the same way, new credentials first\n"
    "  --stdio             write ours to stdout, read the peer's from stdin up to the line\n"
    "                      a=end-of-candidates; data follows on the same streams (no ICE\n"
    "                      restart then: a lost path ends the call once consent expires)\n"
    "\n"
    "options:\n"
    "  --role R            controlling or controlled (one side each; required)\n"
    "%s"
    "  --relay-only        use relayed candidates only (needs --turn)\n"
    "  --ice-tcp           also gather ICE-TCP host candidates (RFC 6544: active, passive)\n"
    "  --tcp-only          ICE-TCP host candidates only, no UDP\n"
    "  --no-trickle        no trickle ICE: write the whole description once gathering is\n"
    "                      done (atomically) and announce no a=ice-options:trickle, as an\n"
    "                      offer/answer exchange without trickle (SIP) does\n"
    "  --no-restart        no ICE restart of our own when the path is lost (a call then ends\n"
    "                      once consent expires, 30 s); a peer's restart is still answered\n"
    "  --dtls              DTLS 1.2 over the pair (RFC 5763/8842): the description gains\n"
    "                      a=fingerprint (a certificate made for this run unless --dtls-cert)\n"
    "                      and a=setup; the peer's certificate must match its fingerprint;\n"
    "                      every datagram is then one encrypted record, and the result line\n"
    "                      waits for the handshake (it adds dtls, cipher, srtp_profile,\n"
    "                      peer_fingerprint_verified, ms_to_secure)\n"
    "  --setup S           with --dtls: actpass (default; both actpass: the controlled side\n"
    "                      is the DTLS client), active (client) or passive (server)\n"
    "  --dtls-cert F --dtls-key F  with --dtls: present this PEM certificate and key\n"
    "  --no-mdns           do not resolve the peer's <name>.local candidates with multicast\n"
    "                      DNS (RFC 6762); they are skipped\n"
    "  --interface X       gather on this interface name or local address only (repeatable;\n"
    "                      loopback such as 127.0.0.1 only when listed)\n"
    "  --json              print exactly one line {\"connected\":true,\"ms_to_connected\":N,\n"
    "                      \"local_type\":...,\"remote_type\":...,\"local\":...,\"remote\":...}\n"
    "                      (or {\"connected\":false,\"error\":...}) on stdout before any data;\n"
    "                      without it the result goes to stderr as one sentence. --ping and\n"
    "                      --bench then print their result as one JSON line too. Then one\n"
    "                      line per event of the call, {\"event\":\"disconnected\"|\"connected\"|\n"
    "                      \"restarted\"|\"selected\",\"t_ms\":N,...} with the reason or pair\n"
    "                      (on stderr when stdout carries the data)\n"
    "  --echo              send back every datagram unchanged (stdin is not read; datagrams\n"
    "                      that arrive before we are connected are queued and sent once we\n"
    "                      are); ends on --timeout, when the connection fails or after --idle\n"
    "  --idle S            with --echo: end S seconds after the last datagram, once one came\n"
    "                      (default 10)\n"
    "  --ping N            send N datagrams \"icepunch-ping <seq> <send-time-ns>\\n\" 20 ms apart\n"
    "                      to a peer that echoes and print RTT min/median/max (unanswered\n"
    "                      after 2 s counts as lost) and the longest outage\n"
    "  --bench S           send 1200-byte datagrams \"icepunch-bench <seq> ...\" for S seconds\n"
    "                      to a peer that echoes (at most 64 unanswered) and print the\n"
    "                      throughput up (sent) and down (echoed back) and the loss\n"
    "  --timeout S         give up after S seconds in all: waiting for the peer's\n"
    "                      description, connecting and the data phase (default: 60 s for the\n"
    "                      description, 30 s to connect, no limit for data)\n"
    "  -h, --help          this text\n"
    "\n"
    "SIGUSR1 restarts ICE (file mode), as a lost path would.\n"
    "\n"
    "ms_to_connected counts from having the peer's description to the selected pair.\n"
    "exit status: 0 connected (and, with --ping or --bench, something echoed; with --echo, a\n"
    "peer that leaves after its data was echoed is a normal end), 1 not connected, connection\n"
    "lost (recovery found no new path within the connect timeout) or another failure, 2 usage\n"
    "error.\n";

constexpr std::size_t kMaxDatagram = 1200; // stdin lines longer than this are split
constexpr std::size_t kBenchSize = 1200;
constexpr std::size_t kBenchWindow = 64; // unanswered bench datagrams at most
constexpr std::size_t kEchoQueueMax = 8192;
constexpr auto kDrainQuiet = 500ms;
constexpr auto kDrainMax = 3s;
constexpr auto kPingInterval = 20ms;
constexpr auto kLostAfter = 2s; // a ping (or bench datagram) unanswered this long is lost
constexpr std::string_view kPingPrefix = "icepunch-ping ";
constexpr std::string_view kBenchPrefix = "icepunch-bench ";

// Buffered reads of fd 0: description lines first (in --stdio mode), then raw data.
class StdinReader {
public:
    // One line without its end, or nullopt on EOF / deadline.
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
            if (buffer_.size() > kMaxDescriptionBytes) {
                tooLong_ = true; // no line end in sight: never buffer an unbounded line
                return std::nullopt;
            }
            if (eof_ || !fill(until))
                return std::nullopt;
        }
    }
    bool tooLong() const { return tooLong_; }
    // The next datagram's worth: a line with its "\n", its first max bytes when it is longer,
    // or the unterminated rest at EOF. nullopt on EOF (see eof()) or when until passes.
    std::optional<std::string> readDatagram(std::size_t max, Clock::time_point until) {
        for (;;) {
            auto nl = buffer_.find('\n');
            std::size_t n = 0;
            if (nl != std::string::npos && nl < max)
                n = nl + 1;
            else if (buffer_.size() >= max)
                n = max;
            else if (eof_)
                n = buffer_.size();
            if (n > 0) {
                std::string out = buffer_.substr(0, n);
                buffer_.erase(0, n);
                return out;
            }
            if (eof_ || !fill(until))
                return std::nullopt;
        }
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
    bool tooLong_ = false;
};

struct Options {
    Role role = Role::Controlling;
    bool roleGiven = false;
    std::string localFile, remoteFile;
    bool stdio = false;
    bool json = false;
    bool echo = false;
    double idle = 10;
    long ping = 0;
    double bench = 0;
    std::optional<double> timeout;
    bool noTrickle = false; // offer/answer as SIP does: the whole description once gathered
    bool noRestart = false; // no automatic ICE restart (a peer's restart is still answered)
    bool setupGiven = false;
};

struct Session {
    std::mutex mutex;
    std::condition_variable changed;
    bool gatheringDone = false;
    std::optional<CandidatePair> pair;
    std::optional<Clock::time_point> connectedAt;
    std::optional<Failure> failure;
    // --dtls: the handshake's outcome.
    std::optional<SecureInfo> secure;
    std::optional<Clock::time_point> secureAt;
    std::optional<std::string> secureFailure;
    std::vector<SkippedLine> skipped; // remote candidates the agent did not use
    // After the result line: one line per event (disconnected, connected, restarted, selected).
    bool resultOut = false;
    ComponentState lastState = ComponentState::Disconnected;
    // File mode: when the peer's credentials were read, and what the follower saw of its file.
    std::optional<Clock::time_point> remoteCredentialsAt;
    bool followerDone = false;
    std::optional<std::string> followerError;
    std::string remoteText;

    // Data phase: every datagram received.
    uint64_t receivedCount = 0, receivedBytes = 0;
    std::optional<Clock::time_point> lastReceived;
    // netcat: datagrams kept until the result line is out, then stdout carries them directly.
    bool outputOpen = false;
    std::vector<std::string> early;
    // --echo: datagrams not sent back yet (not connected yet, or the send failed).
    std::deque<std::string> echoQueue;
    uint64_t echoed = 0, echoDropped = 0;
    // --ping: by sequence number, the send time and the RTT once answered.
    std::vector<std::optional<Clock::time_point>> pingSent;
    std::vector<std::optional<double>> pingRttMs;
    std::size_t pingAnswered = 0;
    // --bench: unanswered datagrams by sequence number, and what came back.
    std::map<uint64_t, Clock::time_point> benchInFlight;
    uint64_t benchEchoed = 0, benchEchoedBytes = 0;
    std::vector<double> benchRttsMs;
    std::optional<Clock::time_point> benchLastEcho;
};

// The sequence number after `prefix` in a datagram of ours, if it is one.
std::optional<uint64_t> sequenceAfter(std::string_view datagram, std::string_view prefix) {
    if (!datagram.starts_with(prefix))
        return std::nullopt;
    datagram.remove_prefix(prefix.size());
    uint64_t seq = 0;
    auto [end, ec] = std::from_chars(datagram.data(), datagram.data() + datagram.size(), seq);
    if (ec != std::errc{} || end == datagram.data() || end == datagram.data() + datagram.size() ||
        *end != ' ')
        return std::nullopt;
    return seq;
}

double msBetween(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
}

uint64_t nowNs() {
    return static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
            .count());
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
    // No fsync: this is a rendezvous with a process on this machine, not data to keep; the
    // rename alone makes the whole text appear at once (fsync cost milliseconds under load).
    bool ok = writeAll(fd, text.data(), text.size());
    ::close(fd);
    if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
        error = "cannot write \"" + path + "\": " + std::strerror(errno);
        ::unlink(temp.c_str());
        return false;
    }
    return true;
}

// Our side of the file contract, trickled: the credentials first (written atomically, so a
// reader never sees half of them), then each candidate appended as a whole line as it is
// gathered, a=end-of-candidates last. A peer that waits for a=end-of-candidates and reads the
// whole file sees what it always saw; one that follows the file uses each line as it appears.
//
// After an ICE restart the file is written anew the same way (new credentials atomically, then
// the new candidates, a=end-of-candidates last): a reader that follows it sees the file replaced.
class TrickleFileWriter {
public:
    bool start(const std::string& path, const std::string& credentials, std::string& error) {
        std::lock_guard lock(mutex_);
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
        ended_ = false;
        if (!writeFileAtomically(path, credentials, error))
            return false;
        fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd_ < 0) {
            error = "cannot append to \"" + path + "\": " + std::strerror(errno);
            return false;
        }
        return true;
    }
    ~TrickleFileWriter() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    void candidate(const Candidate& c) { append("a=" + c.toString() + "\r\n"); }
    void end() {
        append("a=end-of-candidates\r\n");
        std::lock_guard lock(mutex_);
        ended_ = true;
    }

private:
    void append(const std::string& line) {
        std::lock_guard lock(mutex_);
        if (fd_ >= 0 && !ended_)
            (void)writeAll(fd_, line.data(), line.size()); // one write: the line stays whole
    }
    std::mutex mutex_;
    int fd_ = -1;
    bool ended_ = false;
};

// The peer's file, followed as it grows: complete lines only, the size capped.
class TrickleFileReader {
public:
    explicit TrickleFileReader(std::string path) : path_(std::move(path)) {
        // inotify on the file's directory (the file may not exist yet, or be replaced by a
        // rename): a line the peer appends is read at once, not at the next look. Without it,
        // waitForChange() is a plain sleep.
        notify_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        auto slash = path_.rfind('/');
        std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash + 1);
        name_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
        if (notify_ >= 0 &&
            inotify_add_watch(notify_, dir.c_str(),
                              IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO) < 0) {
            ::close(notify_);
            notify_ = -1;
        }
    }
    ~TrickleFileReader() {
        if (notify_ >= 0)
            ::close(notify_);
    }
    TrickleFileReader(const TrickleFileReader&) = delete;
    TrickleFileReader& operator=(const TrickleFileReader&) = delete;

    // Until the peer's file changed (or was created or replaced), at most `limit`.
    void waitForChange(std::chrono::milliseconds limit) {
        if (notify_ < 0) {
            std::this_thread::sleep_for(limit);
            return;
        }
        auto until = std::chrono::steady_clock::now() + limit;
        for (;;) {
            auto left = std::chrono::ceil<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            pollfd p{notify_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
                return;
            alignas(inotify_event) char buffer[4096];
            bool ours = false;
            for (ssize_t n; (n = ::read(notify_, buffer, sizeof buffer)) > 0;) {
                for (ssize_t at = 0; at < n;) {
                    auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
                    ours = ours || (event->len && name_ == event->name) ||
                           (event->mask & IN_Q_OVERFLOW);
                    at += static_cast<ssize_t>(sizeof(inotify_event) + event->len);
                }
            }
            if (ours)
                return;
            // Only another file of the directory (ours, say) changed: wait on.
        }
    }
    // New complete lines since the last call (without line ends); an error for a file over the
    // limit. A file that is not there yet gives no lines.
    Result<std::vector<std::string>> poll() {
        std::vector<std::string> lines;
        int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return lines;
        struct stat st {};
        if (::fstat(fd, &st) == 0 && static_cast<std::size_t>(st.st_size) > kMaxDescriptionBytes) {
            ::close(fd);
            return Error{"the peer's description \"" + path_ + "\" is " +
                             std::to_string(st.st_size) + " bytes, over the limit of " +
                             std::to_string(kMaxDescriptionBytes),
                         ErrorCode::LimitExceeded};
        }
        if (st.st_ino != inode_) { // replaced (the atomic first write): start over
            replaced_ = inode_ != 0;
            inode_ = st.st_ino;
            offset_ = 0;
            partial_.clear();
        }
        char buffer[16384];
        for (;;) {
            ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(offset_));
            if (n <= 0)
                break;
            offset_ += static_cast<std::size_t>(n);
            partial_.append(buffer, static_cast<std::size_t>(n));
            if (offset_ > kMaxDescriptionBytes)
                break;
        }
        ::close(fd);
        for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
            std::string line = partial_.substr(0, nl);
            partial_.erase(0, nl + 1);
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            lines.push_back(std::move(line));
        }
        return lines;
    }

    // True once after poll() found the file replaced by a new one (the peer restarted ICE): the
    // lines that follow are a new description.
    bool takeReplaced() { return std::exchange(replaced_, false); }

private:
    std::string path_;
    std::string name_;
    int notify_ = -1;
    bool replaced_ = false;
    ino_t inode_ = 0;
    std::size_t offset_ = 0;
    std::string partial_;
};

bool isEndOfCandidates(const std::string& line) {
    return line == "a=end-of-candidates" || line == "end-of-candidates";
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
        } else if (args.is("--idle")) {
            if (!args.number(o.idle, 0.1, 86400))
                return kExitUsage;
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
        } else if (args.is("--no-trickle")) {
            if (!args.flag())
                return kExitUsage;
            o.noTrickle = true;
            config.trickle = false;
        } else if (args.is("--no-mdns")) {
            if (!args.flag())
                return kExitUsage;
            config.resolveMdns = false;
        } else if (args.is("--dtls")) {
            if (!args.flag())
                return kExitUsage;
            config.security.enabled = true;
        } else if (args.is("--setup")) {
            if (!args.value(text))
                return kExitUsage;
            auto setup = parseDtlsSetup(text);
            if (!setup)
                return args.usageError("--setup is actpass, active or passive, not \"" + text +
                                       "\"");
            config.security.setup = *setup;
            o.setupGiven = true;
        } else if (args.is("--dtls-cert") || args.is("--dtls-key")) {
            bool cert = args.is("--dtls-cert");
            if (!args.value(text))
                return kExitUsage;
            std::ifstream in(text, std::ios::binary);
            std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (!in.good() && !in.eof())
                return args.usageError("cannot read " + text);
            if (pem.empty() || pem.size() > 1 << 20)
                return args.usageError(text + " is empty or over 1 MiB: not a PEM file");
            (cert ? config.security.certificatePem : config.security.privateKeyPem) = pem;
        } else if (args.is("--no-restart")) {
            if (!args.flag())
                return kExitUsage;
            o.noRestart = true;
        } else if (args.is("--ice-tcp") || args.is("--tcp-only")) {
            if (!args.flag())
                return kExitUsage;
            config.tcp = true; // RFC 6544 host candidates
            if (args.is("--tcp-only"))
                config.udp = false;
        } else {
            return args.unknown();
        }
    }
    if ((o.setupGiven || !config.security.certificatePem.empty() ||
         !config.security.privateKeyPem.empty()) &&
        !config.security.enabled)
        return args.usageError("--setup, --dtls-cert and --dtls-key need --dtls");
    if (config.security.certificatePem.empty() != config.security.privateKeyPem.empty())
        return args.usageError("--dtls-cert and --dtls-key go together");
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
    // stdin/stdout carry the data once connected: there is no way to hand the peer a new
    // description, so no ICE restart either.
    config.autoRestart = !o.stdio && !o.noRestart;
    config.policy = relayOnly ? CandidatePolicy::RelayOnly : CandidatePolicy::All;
    return kExitOk;
}

// Which local and remote candidates could pair (RFC 8445 6.1.2.2: same component and address
// family, UDP with UDP, ICE-TCP active with passive and so on).
bool couldPair(const Candidate& local, const Candidate& remote) {
    if (local.component != remote.component || local.isIpv6() != remote.isIpv6() ||
        local.transport != remote.transport)
        return false;
    if (local.transport == Transport::Udp)
        return true;
    return (local.tcpType == TcpType::Active && remote.tcpType == TcpType::Passive) ||
           (local.tcpType == TcpType::Passive && remote.tcpType == TcpType::Active) ||
           (local.tcpType == TcpType::SimultaneousOpen &&
            remote.tcpType == TcpType::SimultaneousOpen);
}

std::string candidateText(const Candidate& c) {
    std::string text = std::string(toString(c.type)) + " " + std::string(toString(c.transport)) +
                       (c.tcpType != TcpType::None ? "/" + std::string(toString(c.tcpType)) : "") +
                       " " + c.endpoint();
    if (c.relatedAddress)
        text += " (related " + *c.relatedAddress + ":" + std::to_string(c.relatedPort.value_or(0)) +
                ")";
    return text;
}

// The pair's fields of the result line and of "selected" events.
std::string pairJson(const CandidatePair& pair) {
    return ",\"local_type\":" + jsonString(toString(pair.local.type)) +
           ",\"remote_type\":" + jsonString(toString(pair.remote.type)) +
           ",\"local\":" + jsonString(pair.local.endpoint()) +
           ",\"remote\":" + jsonString(pair.remote.endpoint()) +
           ",\"transport\":" + jsonString(pair.local.transport == Transport::Tcp ? "tcp" : "udp") +
           (pair.relayProtocol.empty()
                ? std::string()
                : ",\"relay_protocol\":" + jsonString(pair.relayProtocol) +
                      ",\"relay_server\":" + jsonString(pair.relayServer->toString()));
}

std::string pairText(const CandidatePair& pair) {
    return "local " + std::string(toString(pair.local.type)) + " " + pair.local.endpoint() +
           " -> remote " + std::string(toString(pair.remote.type)) + " " + pair.remote.endpoint() +
           " (" +
           (pair.isRelayed() ? "relayed over " + pair.relayProtocol : std::string("direct")) + ")";
}

// What a user debugging a failed call wants to see, like the Trickle-ICE page: every candidate on
// both sides and every pair with what is known of its state. libnice 0.1.21 does not expose the
// state of each check, so a pair's state is what the component's end says of all of them.
struct Diagnosis {
    std::string json; // ,"local_candidates":[...],"remote_candidates":[...],"pairs":[...]
    std::string text;
};

Diagnosis diagnose(const std::vector<Candidate>& local, const std::vector<Candidate>& remote,
                   const std::vector<SkippedLine>& skipped, const std::optional<Failure>& failure) {
    std::string pairState = !failure                                     ? "in progress"
                            : failure->kind == FailureKind::ChecksFailed ? "failed"
                            : failure->kind == FailureKind::ConsentLost  ? "consent lost"
                                                                         : "not succeeded";
    Diagnosis d;
    auto list = [](const std::vector<Candidate>& cs) {
        std::string out = "[";
        for (std::size_t i = 0; i < cs.size(); ++i) {
            if (i)
                out += ',';
            out += jsonString(cs[i].toString()); // not "," + ...: GCC 12's -Wrestrict misfires
        }
        return out + "]";
    };
    d.json = ",\"local_candidates\":" + list(local) + ",\"remote_candidates\":" + list(remote);
    d.text = "  local candidates (" + std::to_string(local.size()) + "):\n";
    for (const auto& c : local)
        d.text += "    " + candidateText(c) + "\n";
    d.text += "  remote candidates (" + std::to_string(remote.size()) + "):\n";
    for (const auto& c : remote)
        d.text += "    " + candidateText(c) + "\n";
    for (const auto& line : skipped)
        d.text += "    skipped " + line.line + ": " + line.reason + "\n";
    std::string pairs = "[";
    std::size_t n = 0;
    std::string pairText;
    for (const auto& l : local) {
        for (const auto& r : remote) {
            if (!couldPair(l, r))
                continue;
            pairs += std::string(n++ ? "," : "") + "{\"local\":" + jsonString(l.endpoint()) +
                     ",\"local_type\":" + jsonString(toString(l.type)) +
                     ",\"remote\":" + jsonString(r.endpoint()) +
                     ",\"remote_type\":" + jsonString(toString(r.type)) +
                     ",\"state\":" + jsonString(pairState) + "}";
            pairText +=
                "    " + candidateText(l) + " -> " + candidateText(r) + ": " + pairState + "\n";
        }
    }
    d.json += ",\"pairs\":" + pairs + "]";
    d.text += "  candidate pairs (" + std::to_string(n) + "):\n" + pairText;
    if (n == 0)
        d.text += "    none: no local and remote candidate share a component, family and "
                  "transport\n";
    return d;
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

    if (!o.stdio)
        std::signal(SIGUSR1, onRestartSignal);
    Session s;
    std::unique_ptr<Agent> agent;
    StreamId stream = 0;
    std::atomic<bool> stdoutBroken{false};

    // Callbacks use this, not `agent`: unique_ptr::reset() clears `agent` before ~Agent, which
    // waits for a callback that is running, so that callback must not read `agent`. No callback
    // runs once ~Agent has returned.
    Agent* live = nullptr;
    auto send = [&](std::string_view datagram) {
        return bool(live->send(stream, 1, datagram));
    };
    // --echo: sends back what is queued, in order, as far as sends work. Under s.mutex.
    auto flushEchoQueue = [&] {
        while (!s.echoQueue.empty() && send(s.echoQueue.front())) {
            s.echoQueue.pop_front();
            ++s.echoed;
        }
    };

    TrickleFileWriter writer; // file mode: our description as it is gathered
    // After the result line, every event of the call as one line: JSON on stdout with --json
    // (stderr when stdout carries the data, netcat mode), else a sentence on stderr. Under
    // s.mutex; nothing before the result line, which says how the call started.
    const bool dataOnStdout = !o.echo && o.ping == 0 && !(o.bench > 0);
    auto event = [&](const std::string& name, const std::string& fields, const std::string& text) {
        if (!s.resultOut)
            return;
        auto t = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
        if (o.json)
            emitLine(dataOnStdout ? stderr : stdout, "{\"event\":" + jsonString(name) +
                                                         ",\"t_ms\":" + std::to_string(t.count()) +
                                                         fields + "}");
        else
            std::fprintf(stderr, "icepunch connect: %s\n", text.c_str());
    };
    Agent::Callbacks cb;
    std::function<void()> writeWhole; // --no-trickle: the description once gathering is done
    cb.localCandidate = [&](StreamId, const Candidate& c) {
        if (!o.stdio && !o.noTrickle)
            writer.candidate(c);
    };
    cb.gatheringDone = [&](StreamId) {
        if (!o.stdio && !o.noTrickle)
            writer.end();
        if (!o.stdio && o.noTrickle && writeWhole)
            writeWhole();
        std::lock_guard lock(s.mutex);
        s.gatheringDone = true;
        s.changed.notify_all();
    };
    cb.stateChanged = [&](StreamId, ComponentId, ComponentState state) {
        std::lock_guard lock(s.mutex);
        bool up = state == ComponentState::Connected || state == ComponentState::Completed;
        if (up && !s.connectedAt) {
            s.connectedAt = Clock::now();
            if (o.echo)
                flushEchoQueue(); // what the peer sent while we were still checking
        }
        if (up && s.lastState == ComponentState::Disconnected && s.pair)
            event("connected", pairJson(*s.pair), "connected again: " + pairText(*s.pair));
        if (up && o.echo)
            flushEchoQueue();
        s.lastState = state;
        s.changed.notify_all();
    };
    cb.selectedPairChanged = [&](StreamId, ComponentId, const CandidatePair& pair) {
        std::lock_guard lock(s.mutex);
        bool changed = !s.pair || s.pair->local.toString() != pair.local.toString() ||
                       s.pair->remote.toString() != pair.remote.toString();
        s.pair = pair;
        if (changed)
            event("selected", pairJson(pair), "selected pair: " + pairText(pair));
        s.changed.notify_all();
    };
    cb.disconnected = [&](StreamId, ComponentId, const std::string& reason) {
        std::lock_guard lock(s.mutex);
        event("disconnected", ",\"reason\":" + jsonString(reason), "disconnected: " + reason);
    };
    // An ICE restart, ours or the peer's: the new description goes into our file as the first
    // one did (trickled, or whole once gathered with --no-trickle).
    cb.restarted = [&](StreamId, const std::string& reason) {
        if (!o.stdio && !o.noTrickle) {
            std::string error;
            auto credentials = live->localDescription(stream);
            if (credentials) { // the candidates follow through localCandidate, as at the start
                credentials->candidates.clear();
                credentials->endOfCandidates = false;
            }
            if (!credentials || !writer.start(o.localFile, credentials->toString(), error))
                std::fprintf(stderr, "icepunch connect: after an ICE restart: %s\n",
                             credentials ? error.c_str() : credentials.error().message.c_str());
        }
        std::lock_guard lock(s.mutex);
        event("restarted", ",\"reason\":" + jsonString(reason), "ICE restart: " + reason);
    };
    cb.failed = [&](StreamId, ComponentId, const Failure& failure) {
        std::lock_guard lock(s.mutex);
        s.failure = failure;
        s.changed.notify_all();
    };
    cb.secureConnected = [&](StreamId, ComponentId, const SecureInfo& info) {
        std::lock_guard lock(s.mutex);
        s.secure = info;
        s.secureAt = Clock::now();
        if (o.echo)
            flushEchoQueue(); // what the peer sent during our last flight
        s.changed.notify_all();
    };
    cb.secureFailed = [&](StreamId, ComponentId, const std::string& reason) {
        std::lock_guard lock(s.mutex);
        if (!s.secureFailure)
            s.secureFailure = reason;
        bool closed = reason.find("close_notify") != std::string::npos;
        event(closed ? "secure-closed" : "secure-failed", ",\"reason\":" + jsonString(reason),
              "DTLS: " + reason);
        s.changed.notify_all();
    };
    cb.remoteCandidateSkipped = [&](StreamId, const SkippedLine& line) {
        std::fprintf(stderr, "icepunch connect: skipped the peer's %s: %s\n", line.line.c_str(),
                     line.reason.c_str());
        std::lock_guard lock(s.mutex);
        s.skipped.push_back(line);
    };
    cb.received = [&](StreamId, ComponentId, std::span<const std::byte> data) {
        std::string_view datagram(reinterpret_cast<const char*>(data.data()), data.size());
        auto now = Clock::now();
        std::lock_guard lock(s.mutex);
        ++s.receivedCount;
        s.receivedBytes += datagram.size();
        s.lastReceived = now;
        if (o.echo) {
            // In order: behind anything still queued, and queued until we are connected.
            if (s.connectedAt && s.echoQueue.empty() && send(datagram))
                ++s.echoed;
            else if (s.echoQueue.size() < kEchoQueueMax)
                s.echoQueue.emplace_back(datagram);
            else
                ++s.echoDropped;
        } else if (o.ping > 0) {
            auto seq = sequenceAfter(datagram, kPingPrefix);
            if (seq && *seq < s.pingSent.size() && s.pingSent[*seq] && !s.pingRttMs[*seq] &&
                now - *s.pingSent[*seq] <= kLostAfter) {
                s.pingRttMs[*seq] = msBetween(*s.pingSent[*seq], now);
                ++s.pingAnswered;
            }
        } else if (o.bench > 0) {
            auto seq = sequenceAfter(datagram, kBenchPrefix);
            if (auto it = seq ? s.benchInFlight.find(*seq) : s.benchInFlight.end();
                it != s.benchInFlight.end()) {
                s.benchRttsMs.push_back(msBetween(it->second, now));
                s.benchInFlight.erase(it);
                ++s.benchEchoed;
                s.benchEchoedBytes += datagram.size();
                s.benchLastEcho = now;
            }
        } else if (!s.outputOpen) {
            s.early.emplace_back(datagram);
        } else if (!stdoutBroken && !writeAll(STDOUT_FILENO, datagram.data(), datagram.size())) {
            stdoutBroken = true;
        }
        s.changed.notify_all();
    };

    // Set once the peer's description is in: a failure from then on lists both sides.
    std::optional<SessionDescription> remote;
    std::function<void()> stopFollower = [] {
    }; // file mode: stops the thread that feeds the agent
    auto fail = [&](const std::string& message) {
        stopFollower();
        Diagnosis d;
        if (agent && !remote && !o.stdio) {
            std::string text;
            {
                std::lock_guard lock(s.mutex);
                text = s.remoteText;
            }
            if (auto parsed = SessionDescription::parse(text))
                remote = std::move(*parsed);
        }
        if (agent && remote) {
            std::optional<Failure> failure;
            std::vector<SkippedLine> skipped = remote->skipped;
            {
                std::lock_guard lock(s.mutex);
                failure = s.failure;
                skipped.insert(skipped.end(), s.skipped.begin(), s.skipped.end());
            }
            std::vector<Candidate> used;
            for (const auto& c : remote->candidates) {
                bool wasSkipped = std::any_of(skipped.begin(), skipped.end(), [&](auto& line) {
                    return line.line == "a=" + c.toString();
                });
                if (!wasSkipped)
                    used.push_back(c);
            }
            auto local = agent->localDescription(stream);
            d = diagnose(local ? local->candidates : std::vector<Candidate>{}, used, skipped,
                         failure);
        }
        if (o.json)
            emitLine(stdout,
                     "{\"connected\":false,\"error\":" + jsonString(message) + d.json + "}");
        std::fprintf(stderr, "icepunch connect: %s\n%s", message.c_str(), d.text.c_str());
        agent.reset();
        return kExitFailure;
    };

    auto created = Agent::create(config, cb);
    if (!created)
        return fail(created.error().message);
    agent = std::move(*created);
    live = agent.get();
    auto added = agent->addStream(1);
    if (!added)
        return fail(added.error().message);
    stream = *added;
    std::string wholeError;
    if (!o.stdio && o.noTrickle) {
        writeWhole = [&] {
            auto local = live->localDescription(stream);
            if (!local) {
                wholeError = local.error().message;
                return;
            }
            local->endOfCandidates = true;
            if (!writeFileAtomically(o.localFile, local->toString(), wholeError))
                std::fprintf(stderr, "icepunch connect: %s\n", wholeError.c_str());
        };
    } else if (!o.stdio) {
        // Trickle through the files: credentials now, candidates as they come.
        auto credentials = agent->localDescription(stream);
        if (!credentials)
            return fail(credentials.error().message);
        std::string error;
        if (!writer.start(o.localFile, credentials->toString(), error))
            return fail(error);
    }
    say("gathering");
    if (auto st = agent->gather(stream); !st)
        return fail(st.error().message);
    StdinReader input;
    std::string remoteText;
    auto waitUntil = deadlineOr(60s);
    // File mode: what the follower thread uses; declared before it so they outlive it.
    TrickleFileReader reader(o.remoteFile);
    std::string text;
    bool credentialsSet = false;
    std::optional<std::string> readError;
    std::function<bool(const std::vector<std::string>&, bool&)> apply;
    std::thread follower; // file mode: applies the peer's lines as they appear
    std::atomic<bool> stopFollowing{false};
    auto joinFollower = [&] {
        stopFollowing = true;
        if (follower.joinable())
            follower.join();
    };
    struct FollowerExit {
        std::function<void()> fn;
        ~FollowerExit() { fn(); }
    } followerExit{joinFollower};
    stopFollower = joinFollower;
    if (o.stdio) {
        {
            std::unique_lock lock(s.mutex);
            if (!s.changed.wait_until(lock, deadlineOr(config.gatherTimeout + 5s),
                                      [&] { return s.gatheringDone; })) {
                lock.unlock();
                return fail("gathering did not finish in time");
            }
        }
        auto local = agent->localDescription(stream);
        if (!local)
            return fail(local.error().message);
        local->endOfCandidates = true;
        std::string localText = local->toString();
        std::fwrite(localText.data(), 1, localText.size(), stdout);
        std::fflush(stdout);
        say("waiting for the peer's description");
        bool complete = false;
        while (!complete) {
            auto line = input.readLine(waitUntil);
            if (!line) {
                if (input.eof() || input.tooLong() || Clock::now() >= waitUntil)
                    break;
                continue;
            }
            remoteText += *line + "\n";
            if (remoteText.size() > kMaxDescriptionBytes)
                return fail("the peer's description on stdin is over the limit of " +
                            std::to_string(kMaxDescriptionBytes) + " bytes");
            complete = isEndOfCandidates(*line);
        }
        if (input.tooLong())
            return fail("the peer's description on stdin has a line over the limit of " +
                        std::to_string(kMaxDescriptionBytes) + " bytes");
        if (!complete)
            return fail(input.eof() ? "stdin ended before the peer's a=end-of-candidates"
                                    : "no complete peer description on stdin in time");
        auto parsed = SessionDescription::parse(remoteText);
        if (!parsed)
            return fail("the peer's description is malformed: " + parsed.error().message);
        remote = std::move(*parsed);
        if (auto st = agent->setRemoteDescription(stream, *remote); !st)
            return fail(st.error().message);
        if (!remote->endOfCandidates)
            (void)agent->endOfRemoteCandidates(stream);
    } else {
        // Follow the peer's file: its credentials as soon as both lines are there, then every
        // candidate line as it is appended, until a=end-of-candidates.
        say("waiting for the peer's description");
        apply = [&](const std::vector<std::string>& lines, bool& ended) -> bool {
            // Lines that belong with the credentials (a=fingerprint, a=setup, ...) come in the
            // same atomic write: the credentials are used once the last of them is read.
            auto isCandidateLine = [](const std::string& line) {
                return line.starts_with("a=candidate") || line.starts_with("candidate") ||
                       isEndOfCandidates(line);
            };
            for (std::size_t i = 0; i < lines.size(); ++i) {
                const auto& line = lines[i];
                text += line + "\n";
                if (!credentialsSet && i + 1 < lines.size() && !isCandidateLine(lines[i + 1]))
                    continue;
                if (credentialsSet &&
                    (line.starts_with("a=fingerprint:") || line.starts_with("a=setup:"))) {
                    // Written after the credentials: the same session, now with it.
                    if (auto parsed = SessionDescription::parse(text)) {
                        parsed->candidates.clear();
                        parsed->endOfCandidates = false;
                        (void)live->setRemoteDescription(stream, *parsed);
                    }
                    continue;
                }
                if (!credentialsSet) {
                    auto parsed = SessionDescription::parse(text);
                    if (!parsed) {
                        bool incomplete = parsed.error().message.starts_with("missing a=ice-");
                        if (!incomplete) {
                            readError =
                                "the peer's description is malformed: " + parsed.error().message;
                            return false;
                        }
                        continue;
                    }
                    if (auto st = live->setRemoteDescription(stream, *parsed); !st) {
                        readError = st.error().message;
                        return false;
                    }
                    credentialsSet = true;
                    std::lock_guard lock(s.mutex);
                    if (!s.remoteCredentialsAt)
                        s.remoteCredentialsAt = Clock::now();
                    s.changed.notify_all();
                    if (parsed->endOfCandidates) {
                        ended = true;
                        return true;
                    }
                    continue;
                }
                if (isEndOfCandidates(line)) {
                    (void)live->endOfRemoteCandidates(stream);
                    ended = true;
                    return true;
                }
                if (line.starts_with("a=candidate") || line.starts_with("candidate")) {
                    auto candidate = Candidate::parse(line);
                    if (!candidate) {
                        std::lock_guard lock(s.mutex);
                        s.skipped.push_back({0, line, candidate.error().message});
                        std::fprintf(stderr, "icepunch connect: skipped the peer's %s: %s\n",
                                     line.c_str(), candidate.error().message.c_str());
                    } else if (auto st = live->addRemoteCandidate(stream, *candidate); !st) {
                        std::lock_guard lock(s.mutex);
                        s.skipped.push_back({0, "a=" + candidate->toString(), st.error().message});
                        std::fprintf(stderr, "icepunch connect: skipped the peer's %s: %s\n",
                                     line.c_str(), st.error().message.c_str());
                    }
                }
            }
            return true;
        };
        // After a=end-of-candidates it keeps watching: a file replaced by a new one is the
        // peer's ICE restart, read and applied the same way (new credentials, then candidates).
        follower = std::thread([&] {
            bool ended = false;
            bool everSet = false;
            while (!stopFollowing && (everSet || Clock::now() < waitUntil)) {
                auto lines = reader.poll();
                if (!lines) {
                    readError = lines.error().message;
                    break;
                }
                if (everSet && g_restartRequested.exchange(false)) {
                    if (auto st = live->restart(stream); !st)
                        std::fprintf(stderr, "icepunch connect: restart: %s\n",
                                     st.error().message.c_str());
                }
                if (reader.takeReplaced() && everSet) {
                    text.clear();
                    credentialsSet = false;
                    ended = false;
                }
                if (!ended && !apply(*lines, ended)) {
                    if (!everSet)
                        break;
                    std::fprintf(stderr, "icepunch connect: the peer's new description: %s\n",
                                 readError.value_or("unusable").c_str());
                    readError.reset();
                    ended = true; // until the file is replaced again
                }
                if (credentialsSet && !everSet) {
                    everSet = true;
                    std::lock_guard lock(s.mutex);
                    s.remoteText = text;
                }
                // inotify wakes this when the file changes; a look every 5 ms while a
                // description is coming in, 20 ms after, in case it does not (NFS, say).
                reader.waitForChange(ended ? 20ms : 5ms);
            }
            std::lock_guard lock(s.mutex);
            s.remoteText = text;
            s.followerDone = true;
            if (!credentialsSet && !readError)
                readError = "no complete peer description in \"" + o.remoteFile + "\" in time";
            s.followerError = readError;
            s.changed.notify_all();
        });
        std::unique_lock lock(s.mutex);
        s.changed.wait(lock, [&] { return s.remoteCredentialsAt || s.followerDone; });
        if (!s.remoteCredentialsAt) {
            std::string why = s.followerError.value_or("the peer's description never came");
            lock.unlock();
            return fail(why);
        }
    }
    Clock::time_point checksStart = Clock::now();
    {
        std::lock_guard lock(s.mutex);
        if (s.remoteCredentialsAt)
            checksStart = *s.remoteCredentialsAt;
    }
    say("connecting");
    CandidatePair pair;
    Clock::time_point connectedAt;
    {
        std::unique_lock lock(s.mutex);
        bool done = s.changed.wait_until(lock, deadlineOr(config.connectTimeout + 2s),
                                         [&] { return (s.connectedAt && s.pair) || s.failure; });
        std::optional<Failure> failure = s.failure;
        if (done && !failure) {
            pair = *s.pair;
            connectedAt = *s.connectedAt;
        }
        lock.unlock(); // fail() reads the session and destroys the agent: not under the lock
        if (failure)
            return fail("not connected: " + failure->message);
        if (!done)
            return fail("not connected within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           Clock::now() - checksStart)
                                           .count()) +
                        " ms of having the peer's description (--timeout); state " +
                        std::string(toString(agent->state(stream, 1))));
    }
    std::string secureFields; // --dtls: the handshake's outcome, on the result line
    std::string secureText;
    if (config.security.enabled) {
        say("DTLS handshake");
        std::unique_lock lock(s.mutex);
        bool done = s.changed.wait_until(lock, deadlineOr(config.security.handshakeTimeout + 2s),
                                         [&] { return s.secure || s.secureFailure || s.failure; });
        auto secure = s.secure;
        auto secureFailure = s.secureFailure;
        auto failure = s.failure;
        auto at = s.secureAt;
        if (s.pair)
            pair = *s.pair;
        lock.unlock();
        if (secureFailure)
            return fail("not secure: " + *secureFailure);
        if (failure)
            return fail("not connected: " + failure->message);
        if (!done || !secure)
            return fail("connected, but no DTLS handshake within " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                           Clock::now() - connectedAt)
                                           .count()) +
                        " ms of connecting (--timeout)");
        auto toSecure = std::chrono::duration_cast<std::chrono::milliseconds>(*at - checksStart);
        std::string profile = secure->srtp ? secure->srtp->profile : "";
        secureFields = ",\"dtls\":" + jsonString(secure->version) +
                       ",\"cipher\":" + jsonString(secure->cipher) +
                       ",\"srtp_profile\":" + jsonString(profile) +
                       ",\"peer_fingerprint_verified\":" +
                       (secure->peerFingerprintVerified ? "true" : "false") +
                       ",\"dtls_role\":" + jsonString(secure->dtlsClient ? "client" : "server") +
                       ",\"ms_to_secure\":" + std::to_string(toSecure.count());
        secureText = "; DTLS " + secure->version + " " + secure->cipher + " as " +
                     (secure->dtlsClient ? "client" : "server") + ", peer fingerprint verified, " +
                     std::to_string(toSecure.count()) + " ms";
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(connectedAt - checksStart);
    if (o.json) {
        std::lock_guard lock(s.mutex); // events wait for this line
        emitLine(stdout, "{\"connected\":true,\"ms_to_connected\":" + std::to_string(ms.count()) +
                             pairJson(pair) + secureFields + "}");
        s.resultOut = true;
        s.pair = pair;
    } else {
        std::fprintf(
            stderr, "icepunch connect: connected in %lld ms: local %s %s -> remote %s %s (%s)%s\n",
            static_cast<long long>(ms.count()), std::string(toString(pair.local.type)).c_str(),
            pair.local.endpoint().c_str(), std::string(toString(pair.remote.type)).c_str(),
            pair.remote.endpoint().c_str(), pair.isRelayed() ? "relayed" : "direct",
            secureText.c_str());
        std::lock_guard lock(s.mutex);
        s.resultOut = true;
        s.pair = pair;
    }

    // The data phase: raw datagrams, no handshake. A peer that echoes queues what arrives before
    // it is connected itself, so we start right away.
    const auto dataDeadline = hardDeadline;
    auto failedNow = [&] {
        std::lock_guard lock(s.mutex);
        return s.failure.has_value();
    };
    int rc = kExitOk;
    if (o.ping > 0) {
        {
            std::lock_guard lock(s.mutex);
            s.pingSent.resize(static_cast<std::size_t>(o.ping));
            s.pingRttMs.resize(static_cast<std::size_t>(o.ping));
        }
        std::size_t sent = 0;
        auto next = Clock::now();
        for (std::size_t seq = 0; seq < s.pingSent.size(); ++seq, next += kPingInterval) {
            if (next >= dataDeadline || failedNow())
                break;
            std::this_thread::sleep_until(next);
            std::string payload = std::string(kPingPrefix) + std::to_string(seq) + " " +
                                  std::to_string(nowNs()) + "\n";
            std::lock_guard lock(s.mutex); // the answer cannot overtake the send time
            s.pingSent[seq] = Clock::now();
            (void)send(payload); // a failed send is a lost ping
            ++sent;
        }
        std::unique_lock lock(s.mutex);
        s.changed.wait_until(lock, std::min(dataDeadline, Clock::now() + kLostAfter),
                             [&] { return s.pingAnswered >= sent || s.failure.has_value(); });
        std::vector<double> rtts;
        for (auto& rtt : s.pingRttMs)
            if (rtt)
                rtts.push_back(*rtt);
        lock.unlock();
        std::string stats = "null", statsText;
        char line[480];
        if (!rtts.empty()) {
            double mn = *std::min_element(rtts.begin(), rtts.end());
            double mx = *std::max_element(rtts.begin(), rtts.end());
            double md = median(rtts);
            std::snprintf(line, sizeof line,
                          "\"rtt_min_ms\":%.3f,\"rtt_median_ms\":%.3f,\"rtt_max_ms\":%.3f", mn, md,
                          mx);
            stats = line;
            std::snprintf(line, sizeof line, ", RTT min/median/max %.3f/%.3f/%.3f ms", mn, md, mx);
            statsText = line;
        } else {
            stats = "\"rtt_min_ms\":null,\"rtt_median_ms\":null,\"rtt_max_ms\":null";
        }
        std::size_t lost = sent - rtts.size();
        // The longest run of unanswered pings: how long the call was down at worst (a path
        // lost and recovered), and when that began (ms from the start of the process).
        std::size_t runStart = 0, runLength = 0, bestStart = 0, bestLength = 0;
        {
            std::lock_guard lock(s.mutex);
            for (std::size_t seq = 0; seq < sent; ++seq) {
                if (s.pingRttMs[seq]) {
                    runLength = 0;
                    continue;
                }
                if (runLength++ == 0)
                    runStart = seq;
                if (runLength > bestLength) {
                    bestLength = runLength;
                    bestStart = runStart;
                }
            }
        }
        long long outageMs = static_cast<long long>(bestLength) * kPingInterval.count();
        long long outageAt =
            bestLength ? static_cast<long long>(msBetween(start, *s.pingSent[bestStart])) : -1;
        if (o.json)
            std::snprintf(line, sizeof line,
                          "{\"pings\":%zu,\"answered\":%zu,\"lost\":%zu,%s,"
                          "\"longest_outage_ms\":%lld,\"longest_outage_at_ms\":%lld}",
                          sent, rtts.size(), lost, stats.c_str(), outageMs, outageAt);
        else
            std::snprintf(line, sizeof line,
                          "ping: %zu sent, %zu answered, %zu lost%s; longest outage %lld ms", sent,
                          rtts.size(), lost, statsText.c_str(), outageMs);
        emitLine(stdout, line);
        if (rtts.empty()) {
            std::fprintf(stderr, "icepunch connect: no ping was answered\n");
            rc = kExitFailure;
        }
    } else if (o.bench > 0) {
        uint64_t sentCount = 0, sentBytes = 0;
        const auto benchStart = Clock::now();
        const auto benchEnd =
            std::min(dataDeadline,
                     benchStart + std::chrono::milliseconds(static_cast<long>(o.bench * 1000)));
        std::string payload;
        for (uint64_t seq = 0;;) {
            auto now = Clock::now();
            if (now >= benchEnd)
                break;
            {
                std::unique_lock lock(s.mutex);
                if (s.failure)
                    break;
                // Unanswered for too long: lost, out of the window.
                while (!s.benchInFlight.empty() &&
                       now - s.benchInFlight.begin()->second > kLostAfter) {
                    s.benchInFlight.erase(s.benchInFlight.begin());
                }
                if (s.benchInFlight.size() >= kBenchWindow) {
                    s.changed.wait_until(lock, std::min(benchEnd, now + 5ms), [&] {
                        return s.benchInFlight.size() < kBenchWindow || s.failure.has_value();
                    });
                    continue;
                }
            }
            payload = std::string(kBenchPrefix) + std::to_string(seq) + " " +
                      std::to_string(nowNs()) + " ";
            payload.resize(kBenchSize - 1, '.');
            payload += '\n';
            std::unique_lock lock(s.mutex);
            s.benchInFlight.emplace(seq, Clock::now());
            if (send(payload)) {
                ++seq;
                ++sentCount;
                sentBytes += payload.size();
            } else {
                s.benchInFlight.erase(seq);
                lock.unlock();
                std::this_thread::sleep_for(1ms);
            }
        }
        const double seconds = std::chrono::duration<double>(Clock::now() - benchStart).count();
        std::unique_lock lock(s.mutex);
        s.changed.wait_until(lock, std::min(dataDeadline, Clock::now() + kLostAfter),
                             [&] { return s.benchInFlight.empty() || s.failure.has_value(); });
        const uint64_t echoed = s.benchEchoed, echoedBytes = s.benchEchoedBytes;
        const double downSeconds =
            s.benchLastEcho ? std::chrono::duration<double>(*s.benchLastEcho - benchStart).count()
                            : 0.0;
        const double rttMedian = s.benchRttsMs.empty() ? 0.0 : median(s.benchRttsMs);
        lock.unlock();
        const double up = seconds > 0 ? sentBytes / seconds : 0.0;
        const double down = downSeconds > 0 ? echoedBytes / downSeconds : 0.0;
        const double lossPct =
            sentCount > 0 ? 100.0 * static_cast<double>(sentCount - echoed) / sentCount : 0.0;
        char line[512];
        if (o.json)
            std::snprintf(line, sizeof line,
                          "{\"seconds\":%.3f,\"sent\":%llu,\"sent_bytes\":%llu,"
                          "\"up_bytes_per_s\":%.0f,\"up_mbit_s\":%.2f,\"echoed\":%llu,"
                          "\"echoed_bytes\":%llu,\"down_bytes_per_s\":%.0f,\"down_mbit_s\":%.2f,"
                          "\"loss_pct\":%.2f,\"rtt_median_ms\":%.3f}",
                          seconds, static_cast<unsigned long long>(sentCount),
                          static_cast<unsigned long long>(sentBytes), up, up * 8 / 1e6,
                          static_cast<unsigned long long>(echoed),
                          static_cast<unsigned long long>(echoedBytes), down, down * 8 / 1e6,
                          lossPct, rttMedian);
        else
            std::snprintf(line, sizeof line,
                          "bench: %.2f s; up: %llu datagrams, %llu B = %.0f B/s (%.2f Mbit/s); "
                          "down (echoed): %llu datagrams, %llu B = %.0f B/s (%.2f Mbit/s); "
                          "loss %.2f %%; RTT median %.3f ms",
                          seconds, static_cast<unsigned long long>(sentCount),
                          static_cast<unsigned long long>(sentBytes), up, up * 8 / 1e6,
                          static_cast<unsigned long long>(echoed),
                          static_cast<unsigned long long>(echoedBytes), down, down * 8 / 1e6,
                          lossPct, rttMedian);
        emitLine(stdout, line);
        if (echoed == 0) {
            std::fprintf(stderr, "icepunch connect: nothing was echoed back\n");
            rc = kExitFailure;
        }
    } else if (o.echo) {
        // stdin is not read. Until --timeout, a failure, or --idle after the last datagram.
        const auto idle = std::chrono::milliseconds(static_cast<long>(o.idle * 1000));
        std::unique_lock lock(s.mutex);
        for (;;) {
            auto now = Clock::now();
            if (s.failure || now >= dataDeadline ||
                (s.lastReceived && now - *s.lastReceived >= idle))
                break;
            if (s.connectedAt)
                flushEchoQueue(); // retries sends that failed
            auto wake = std::min(dataDeadline, now + 50ms);
            s.changed.wait_until(lock, wake, [&] { return s.failure.has_value(); });
        }
        if (progress)
            std::fprintf(
                stderr,
                "  ... echoed %llu of %llu datagrams (%llu bytes), %llu dropped (queue full)\n",
                static_cast<unsigned long long>(s.echoed),
                static_cast<unsigned long long>(s.receivedCount),
                static_cast<unsigned long long>(s.receivedBytes),
                static_cast<unsigned long long>(s.echoDropped));
    } else {
        // netcat: stdin lines to the peer, datagrams to stdout; those that came before the
        // result line was out follow it now.
        {
            std::lock_guard lock(s.mutex);
            std::fflush(stdout);
            for (const auto& datagram : s.early)
                if (!stdoutBroken && !writeAll(STDOUT_FILENO, datagram.data(), datagram.size()))
                    stdoutBroken = true;
            s.early.clear();
            s.outputOpen = true;
        }
        std::optional<Clock::time_point> eofAt;
        while (!failedNow() && !stdoutBroken) {
            auto now = Clock::now();
            if (now >= dataDeadline)
                break;
            if (!eofAt) {
                auto datagram =
                    input.readDatagram(kMaxDatagram, std::min(dataDeadline, now + 100ms));
                if (datagram) {
                    while (!send(*datagram) && !failedNow() && Clock::now() < dataDeadline)
                        std::this_thread::sleep_for(1ms);
                } else if (input.eof()) {
                    eofAt = Clock::now();
                }
                continue;
            }
            // Drain: until no datagram for kDrainQuiet, at most kDrainMax after the end of stdin.
            std::unique_lock lock(s.mutex);
            auto quietFrom = std::max(*eofAt, s.lastReceived.value_or(*eofAt));
            auto until = std::min({quietFrom + kDrainQuiet, *eofAt + kDrainMax, dataDeadline});
            if (now >= until)
                break;
            s.changed.wait_until(lock, until, [&] { return s.failure.has_value(); });
        }
    }
    {
        std::lock_guard lock(s.mutex);
        if (s.failure && o.echo && s.echoed > 0) {
            // An echo service's peer leaving after its data was answered is the normal end (over
            // ICE-TCP the close is seen at once, before any --idle).
            std::fprintf(stderr, "icepunch connect: the peer went away after %llu datagrams (%s)\n",
                         static_cast<unsigned long long>(s.echoed), s.failure->message.c_str());
        } else if (s.failure) {
            std::fprintf(stderr, "icepunch connect: connection lost: %s\n",
                         s.failure->message.c_str());
            rc = kExitFailure;
        }
    }
    joinFollower(); // it feeds the agent: stopped before the agent goes
    agent.reset();  // no callback runs after this
    std::fflush(stdout);
    return rc;
}

} // namespace icepunch::cli
