#include "coturn_process.hpp"

#include "make_cert.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <thread>

namespace icepunch::support {

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Owns a file descriptor.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd& operator=(Fd&& other) noexcept {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    ~Fd() { reset(); }
    int get() const { return fd_; }
    bool valid() const { return fd_ >= 0; }
    void reset(int fd = -1) {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

std::string errnoText(const std::string& what, int err = errno) {
    return what + ": " + std::strerror(err);
}

struct SockAddr {
    sockaddr_storage storage{};
    socklen_t length = 0;
    int family() const { return storage.ss_family; }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

Result<SockAddr> parseAddress(const std::string& address, uint16_t port) {
    SockAddr out;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out.length = sizeof(sockaddr_in);
    } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out.length = sizeof(sockaddr_in6);
    } else {
        return Error{"not an IP address literal: '" + address + "'"};
    }
    return out;
}

void setPort(SockAddr& addr, uint16_t port) {
    if (addr.family() == AF_INET)
        reinterpret_cast<sockaddr_in*>(&addr.storage)->sin_port = htons(port);
    else
        reinterpret_cast<sockaddr_in6*>(&addr.storage)->sin6_port = htons(port);
}

uint16_t boundPort(int fd) {
    SockAddr addr;
    addr.length = sizeof addr.storage;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr.storage), &addr.length) != 0)
        return 0;
    if (addr.family() == AF_INET)
        return ntohs(reinterpret_cast<sockaddr_in*>(&addr.storage)->sin_port);
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr.storage)->sin6_port);
}

// Binds a socket of the given type; an invalid Fd if the port is taken.
Fd bindSocket(SockAddr addr, uint16_t port, int type) {
    setPort(addr, port);
    Fd fd(::socket(addr.family(), type | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return {};
    if (addr.family() == AF_INET6) {
        int one = 1;
        setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (::bind(fd.get(), addr.get(), addr.length) != 0)
        return {};
    return fd;
}

// Cross-process advisory locks on ports, so that concurrently running helpers (ctest -j, two
// test binaries) never hand the same port to two coturns between probing and coturn's bind.
// Best effort: if the lock directory is unusable the port is used unlocked.
class PortLocks {
public:
    // false if another helper holds it.
    bool tryLock(const std::string& name) {
        const char* tmp = std::getenv("TMPDIR");
        std::string dir =
            std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/icepunch-coturn-locks";
        ::mkdir(dir.c_str(), 01777);
        Fd fd(::open((dir + "/" + name).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0666));
        if (!fd.valid())
            return true;
        if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0)
            return errno != EWOULDBLOCK;
        held_.push_back(std::move(fd));
        return true;
    }
    void releaseLast() { held_.pop_back(); }
    void clear() { held_.clear(); }

private:
    std::vector<Fd> held_;
};

// A port free for UDP and TCP on every address; the sockets stay bound (in keep) until the
// caller has picked all its ports, so no two picks return the same number.
Result<uint16_t> reservePort(const std::vector<SockAddr>& addrs, std::vector<Fd>& keep,
                             PortLocks& locks) {
    for (int attempt = 0; attempt < 100; ++attempt) {
        Fd first = bindSocket(addrs[0], 0, SOCK_STREAM);
        if (!first.valid())
            return Error{errnoText("cannot bind a TCP socket on the listen address")};
        uint16_t port = boundPort(first.get());
        std::vector<Fd> fds;
        fds.push_back(std::move(first));
        bool ok = port != 0;
        for (std::size_t i = 0; ok && i < addrs.size(); ++i) {
            if (i > 0)
                fds.push_back(bindSocket(addrs[i], port, SOCK_STREAM));
            fds.push_back(bindSocket(addrs[i], port, SOCK_DGRAM));
            ok = std::all_of(fds.begin(), fds.end(), [](const Fd& f) { return f.valid(); });
        }
        // Lock names are buckets so the lock directory stays small; a clash just means retry.
        if (!ok || !locks.tryLock("port-" + std::to_string(port % 1024)))
            continue;
        for (Fd& fd : fds)
            keep.push_back(std::move(fd));
        return port;
    }
    return Error{"found no port free for both UDP and TCP after 100 attempts"};
}

// A 200-port relay window below the kernel's ephemeral range (where OS-chosen ports and the
// listeners above live), free for UDP now and locked against other helpers.
Result<std::pair<uint16_t, uint16_t>> reserveRelayRange(const std::vector<SockAddr>& addrs,
                                                        PortLocks& locks) {
    constexpr int kWidth = 200;
    int low = 20000, high = 60000;
    std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
    if (int ephemeralLow = 0; range >> ephemeralLow && ephemeralLow - low >= 20 * kWidth)
        high = ephemeralLow;
    std::random_device seed;
    std::mt19937 rng(seed());
    std::uniform_int_distribution<int> slot(0, (high - low) / kWidth - 1);
    for (int attempt = 0; attempt < 50; ++attempt) {
        int first = low + slot(rng) * kWidth;
        if (!locks.tryLock("relay-" + std::to_string(first)))
            continue;
        bool free = true;
        for (int p = first; free && p < first + kWidth; ++p) {
            for (const SockAddr& addr : addrs)
                free = free && bindSocket(addr, static_cast<uint16_t>(p), SOCK_DGRAM).valid();
        }
        if (free)
            return std::pair{static_cast<uint16_t>(first),
                             static_cast<uint16_t>(first + kWidth - 1)};
        locks.releaseLast();
    }
    return Error{"found no free 200-port relay window after 50 attempts"};
}

Result<std::string> findBinary(const std::string& name) {
    if (name.find('/') != std::string::npos)
        return name;
    const char* path = std::getenv("PATH");
    std::string_view rest = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
    while (true) {
        std::size_t colon = rest.find(':');
        std::string dir(rest.substr(0, colon));
        std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
        if (::access(candidate.c_str(), X_OK) == 0)
            return candidate;
        if (colon == std::string_view::npos)
            break;
        rest.remove_prefix(colon + 1);
    }
    return Error{"'" + name + "' not found in PATH (is coturn installed?)"};
}

using TransactionId = std::array<uint8_t, 12>;

std::array<uint8_t, 20> bindingRequest(const TransactionId& id) {
    std::array<uint8_t, 20> msg{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
    std::copy(id.begin(), id.end(), msg.begin() + 8);
    return msg;
}

bool isBindingSuccess(const uint8_t* data, std::size_t size, const TransactionId& id) {
    static constexpr uint8_t kHeader[] = {0x01, 0x01};
    static constexpr uint8_t kCookie[] = {0x21, 0x12, 0xA4, 0x42};
    return size >= 20 && std::equal(kHeader, kHeader + 2, data) &&
           std::equal(kCookie, kCookie + 4, data + 4) && std::equal(id.begin(), id.end(), data + 8);
}

// Polls one address with Binding requests (one transaction, retransmitted).
class BindingProbe {
public:
    static Result<BindingProbe> open(const SockAddr& server) {
        BindingProbe probe;
        probe.fd_ = Fd(::socket(server.family(), SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!probe.fd_.valid() || ::connect(probe.fd_.get(), server.get(), server.length) != 0)
            return Error{errnoText("cannot open the STUN probe socket")};
        std::random_device rd;
        for (uint8_t& b : probe.id_)
            b = static_cast<uint8_t>(rd());
        return probe;
    }
    int fd() const { return fd_.get(); }
    void send() {
        auto msg = bindingRequest(id_);
        (void)::send(fd_.get(), msg.data(), msg.size(), 0); // ECONNREFUSED until coturn binds
    }
    // Drains the socket; true once a matching success response arrived.
    bool receive() {
        std::array<uint8_t, 1500> buf;
        ssize_t n;
        while ((n = ::recv(fd_.get(), buf.data(), buf.size(), 0)) >= 0 || errno == ECONNREFUSED) {
            if (n > 0 && isBindingSuccess(buf.data(), static_cast<std::size_t>(n), id_))
                done_ = true;
        }
        return done_;
    }
    bool done() const { return done_; }

private:
    Fd fd_;
    TransactionId id_{};
    bool done_ = false;
};

bool tcpConnects(const SockAddr& addr) {
    Fd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    return fd.valid() && ::connect(fd.get(), addr.get(), addr.length) == 0;
}

// Lines that explain a failure even when coturn printed its whole --help after them.
std::string notableLines(const std::string& log) {
    std::string out;
    std::size_t start = 0, count = 0;
    while (start < log.size() && count < 5) {
        std::size_t end = std::min(log.find('\n', start), log.size());
        std::string_view line(log.data() + start, end - start);
        for (std::string_view word : {"ERROR", "error", "unrecognized", "cannot"}) {
            if (line.find(word) != std::string_view::npos) {
                out.append(line).push_back('\n');
                ++count;
                break;
            }
        }
        start = end + 1;
    }
    return out;
}

std::string describeStatus(int status) {
    if (WIFEXITED(status))
        return "exited with status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
    return "stopped";
}

} // namespace

struct CoturnProcess::State {
    mutable std::mutex mutex;
    std::string log;
    std::thread reader;
    PortLocks locks;
    std::vector<SockAddr> addrs; // listen addresses (port 0)
    std::size_t logStart = 0;    // where the current turnserver's output begins (restart)
    bool stopped = false;        // stop() released the ports
    bool reaped = true;          // true until a child exists, and again once waitpid() collected it
    int status = 0;
};

CoturnProcess::CoturnProcess() : state_(std::make_unique<State>()) {}

CoturnProcess::~CoturnProcess() {
    stop();
    if (!dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
}

bool CoturnProcess::running() const {
    std::lock_guard lock(state_->mutex);
    return !state_->reaped;
}

void CoturnProcess::stop() {
    stopProcess();
    state_->locks.clear();
    state_->stopped = true;
}

Status CoturnProcess::restart(std::chrono::milliseconds down) {
    if (state_->stopped)
        return Error{"restart() after stop(): the ports are no longer held"};
    stopProcess();
    std::this_thread::sleep_for(down); // the outage itself: clients meet a closed port meanwhile
    return launch();
}

void CoturnProcess::stopProcess() {
    bool reaped;
    {
        std::lock_guard lock(state_->mutex);
        reaped = state_->reaped;
    }
    if (!reaped) {
        // The PID cannot be reused before we reap it, so these signals reach our child only.
        int status = 0;
        ::kill(pid_, SIGTERM);
        auto deadline = Clock::now() + 3s;
        pid_t r;
        while ((r = ::waitpid(pid_, &status, WNOHANG)) == 0 && Clock::now() < deadline)
            std::this_thread::sleep_for(5ms);
        if (r == 0) {
            ::kill(pid_, SIGKILL);
            r = ::waitpid(pid_, &status, 0);
        }
        std::lock_guard lock(state_->mutex);
        state_->reaped = true;
        state_->status = status;
    }
    if (state_->reader.joinable())
        state_->reader.join();
}

std::string CoturnProcess::log() const {
    std::lock_guard lock(state_->mutex);
    return state_->log;
}

std::string CoturnProcess::currentLog() const {
    std::lock_guard lock(state_->mutex);
    return state_->log.substr(std::min(state_->logStart, state_->log.size()));
}

std::string CoturnProcess::logTail(std::size_t lines) const {
    std::string all = log();
    std::size_t pos = all.size();
    if (pos > 0 && all[pos - 1] == '\n')
        --pos;
    for (std::size_t n = 0; n < lines && pos > 0; ++n) {
        pos = all.rfind('\n', pos - 1);
        if (pos == std::string::npos) {
            pos = 0;
            break;
        }
    }
    return all.substr(pos == 0 ? 0 : pos + 1);
}

int CoturnProcess::liveAllocations() const {
    std::string all = currentLog();
    auto count = [&](std::string_view what) {
        int n = 0;
        for (auto pos = all.find(what); pos != std::string::npos; pos = all.find(what, pos + 1))
            ++n;
        return n;
    };
    return count(": new, realm=") - count(": delete: realm=");
}

std::string CoturnProcess::uri(std::string_view scheme, std::string_view transport) const {
    bool secure = scheme == "turns" || scheme == "stuns";
    const std::string& host = options_.listenAddress;
    std::string out(scheme);
    out += ':';
    out += host.find(':') != std::string::npos ? "[" + host + "]" : host;
    out += ':' + std::to_string(secure ? tlsPort_ : port_);
    if (!transport.empty()) {
        out += "?transport=";
        out += transport;
    }
    return out;
}

Result<std::unique_ptr<CoturnProcess>> CoturnProcess::start(const CoturnOptions& options) {
    // Ports are probed free, then handed to coturn: between the two another process can take
    // one (an OS-chosen port of a test running beside; seen in CI on the DTLS/UDP side of the
    // TLS port). coturn then cannot bind it: start again on new ports, a few times.
    for (int attempt = 1;; ++attempt) {
        auto started = startOnce(options);
        if (started || attempt == 3 ||
            started.error().message.find("Address already in use") == std::string::npos)
            return started;
    }
}

Result<std::unique_ptr<CoturnProcess>> CoturnProcess::startOnce(const CoturnOptions& options) {
    if (!options.user.empty() && !options.staticAuthSecret.empty())
        return Error{"coturn cannot combine a static user with a REST auth secret"};
    if (options.user.empty() != options.password.empty())
        return Error{"a coturn user needs both a name and a password"};
    auto binary = findBinary(options.binary);
    if (!binary)
        return binary.error();

    std::unique_ptr<CoturnProcess> self(new CoturnProcess());
    self->options_ = options;

    std::vector<SockAddr>& addrs = self->state_->addrs;
    for (const std::string& a : {options.listenAddress, options.altListenAddress}) {
        if (a.empty())
            continue;
        auto addr = parseAddress(a, 0);
        if (!addr)
            return addr.error();
        addrs.push_back(*addr);
    }
    if (addrs.empty())
        return Error{"coturn needs a listen address"};
    if (addrs.size() == 2 && addrs[0].family() != addrs[1].family())
        return Error{"the alternate listen address must be of the same family"};

    std::string tmpl = std::filesystem::temp_directory_path() / "icepunch-coturn-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr)
        return Error{errnoText("cannot create a temporary directory")};
    self->dir_ = tmpl;
    const std::string& dir = self->dir_;

    // Ports: keep the probe sockets bound until all numbers are chosen, then hand them over.
    {
        std::vector<Fd> keep;
        PortLocks& locks = self->state_->locks;
        if (options.port) {
            self->port_ = *options.port;
        } else {
            auto port = reservePort(addrs, keep, locks);
            if (!port)
                return port.error();
            self->port_ = *port;
        }
        if (addrs.size() > 1) {
            auto alt = reservePort(addrs, keep, locks);
            if (!alt)
                return alt.error();
            self->altPort_ = *alt;
        }
        if (options.tls) {
            auto tls = reservePort(addrs, keep, locks);
            if (!tls)
                return tls.error();
            self->tlsPort_ = *tls;
        }
        auto relay = reserveRelayRange(addrs, locks);
        if (!relay)
            return relay.error();
        self->minRelayPort_ = relay->first;
        self->maxRelayPort_ = relay->second;
    }

    std::string certFile = options.certFile, keyFile = options.keyFile;
    // coturn only warns about unreadable files and runs without TLS: fail fast instead.
    for (const std::string& file : {certFile, keyFile}) {
        if (options.tls && !certFile.empty() && ::access(file.c_str(), R_OK) != 0)
            return Error{errnoText("cannot read TLS file '" + file + "'")};
    }
    if (options.tls && certFile.empty()) {
        auto cert = makeTestCertificate(dir);
        if (!cert)
            return cert.error();
        certFile = cert->certFile;
        keyFile = cert->keyFile;
        self->caFile_ = cert->caFile;
    }

    std::vector<std::string>& args = self->args_;
    args = {*binary,
            "-n",
            "--no-cli",
            "--log-file=stdout",
            "--simple-log",
            "--db=" + dir + "/turndb",
            "--pidfile=" + dir + "/pid",
            "--listening-ip=" + options.listenAddress,
            "--listening-port=" + std::to_string(self->port_),
            "--min-port=" + std::to_string(self->minRelayPort_),
            "--max-port=" + std::to_string(self->maxRelayPort_),
            "--allow-loopback-peers",
            "--no-multicast-peers",
            "--fingerprint",
            "--realm=" + options.realm};
    if (options.verbose)
        args.push_back("--verbose");
    if (!options.altListenAddress.empty()) {
        args.push_back("--listening-ip=" + options.altListenAddress);
        args.push_back("--alt-listening-port=" + std::to_string(self->altPort_));
    }
    if (options.tls) {
        args.push_back("--tls-listening-port=" + std::to_string(self->tlsPort_));
        args.push_back("--cert=" + certFile);
        args.push_back("--pkey=" + keyFile);
    } else {
        args.push_back("--no-tls");
        args.push_back("--no-dtls");
    }
    if (options.stunOnly)
        args.push_back("--stun-only");
    if (!options.user.empty()) {
        args.push_back("--lt-cred-mech");
        args.push_back("--user=" + options.user + ":" + options.password);
    } else if (!options.staticAuthSecret.empty()) {
        args.push_back("--use-auth-secret");
        args.push_back("--static-auth-secret=" + options.staticAuthSecret);
    } else if (!options.stunOnly) {
        args.push_back("--no-auth");
    }
    for (const std::string& alt : options.alternateServers)
        args.push_back("--alternate-server=" + alt);
    auto addInt = [&args](const char* flag, const std::optional<int>& v) {
        if (v)
            args.push_back(std::string(flag) + "=" + std::to_string(*v));
    };
    addInt("--max-allocate-lifetime", options.maxAllocateLifetime);
    addInt("--permission-lifetime", options.permissionLifetime);
    addInt("--channel-lifetime", options.channelLifetime);
    addInt("--user-quota", options.userQuota);
    addInt("--total-quota", options.totalQuota);
    args.insert(args.end(), options.extraArgs.begin(), options.extraArgs.end());
    if (Status launched = self->launch(); !launched)
        return launched.error();
    return self;
}

Status CoturnProcess::launch() {
    const CoturnOptions& options = options_;
    const std::vector<SockAddr>& addrs = state_->addrs;
    std::vector<std::string>& args = args_;
    // Everything the child touches is prepared before fork(): after it, only async-signal-safe
    // calls are allowed because other threads may hold locks.
    std::vector<char*> argv;
    for (std::string& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) != 0)
        return Error{errnoText("cannot create a pipe")};
    Fd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    Fd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    pid_t parentPid = ::getpid();

    // The reader thread forks the child and lives until its output ends, so the child's
    // PR_SET_PDEATHSIG (tied to the forking thread) fires only if this whole process dies.
    std::promise<int> spawned;
    std::future<int> spawnedPid = spawned.get_future();
    State* state = state_.get();
    {
        std::lock_guard lock(state->mutex);
        state->logStart = state->log.size();
    }
    auto startTime = Clock::now();
    state->reader =
        std::thread([&spawned, &argv, state, parentPid, readEnd = std::move(readEnd),
                     writeEnd = std::move(writeEnd), devNull = std::move(devNull)]() mutable {
            pid_t pid = ::fork();
            if (pid == 0) {
                ::dup2(devNull.get(), 0);
                ::dup2(writeEnd.get(), 1);
                ::dup2(writeEnd.get(), 2);
                ::close_range(3, ~0U, 0);
                ::prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (::getppid() != parentPid)
                    ::_exit(127);
                ::execv(argv[0], argv.data());
                static constexpr char kMessage[] = "icepunch: execv(turnserver) failed\n";
                (void)!::write(2, kMessage, sizeof kMessage - 1);
                ::_exit(127);
            }
            int err = errno;
            if (pid > 0) {
                std::lock_guard lock(state->mutex);
                state->reaped = false;
            }
            writeEnd.reset();
            spawned.set_value(pid > 0 ? pid : -err);
            if (pid < 0)
                return;
            char buf[4096];
            ssize_t n;
            while ((n = ::read(readEnd.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
                if (n > 0) {
                    std::lock_guard lock(state->mutex);
                    state->log.append(buf, static_cast<std::size_t>(n));
                }
            }
        });
    int pid = spawnedPid.get();
    if (pid < 0) {
        state->reader.join();
        return Error{errnoText("cannot fork turnserver", -pid)};
    }
    pid_ = pid;

    std::vector<BindingProbe> probes;
    for (const SockAddr& addr : addrs) {
        SockAddr target = addr;
        setPort(target, port_);
        auto probe = BindingProbe::open(target);
        if (!probe)
            return probe.error();
        probes.push_back(std::move(*probe));
    }
    SockAddr tlsAddr = addrs[0];
    setPort(tlsAddr, tlsPort_);
    bool tlsReady = !options.tls;

    auto failure = [this](const std::string& what) {
        std::string all = currentLog();
        std::string notable = notableLines(all);
        return Error{"turnserver (" + args_[0] + ") " + what +
                     (notable.empty() ? "" : "; errors in its log:\n" + notable) +
                     "; last log lines:\n" + logTail()};
    };
    auto deadline = startTime + options.startTimeout;
    while (true) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            {
                std::lock_guard lock(state->mutex);
                state->reaped = true;
                state->status = status;
            }
            state->reader.join(); // collect its last words
            return failure(describeStatus(status) + " before it was ready");
        }
        bool stunReady = true;
        std::vector<pollfd> pfds;
        for (BindingProbe& probe : probes) {
            if (!probe.done()) {
                probe.send();
                pfds.push_back({probe.fd(), POLLIN, 0});
                stunReady = false;
            }
        }
        if (!pfds.empty()) {
            auto until = Clock::now() + 20ms;
            while (Clock::now() < until) {
                int ms = static_cast<int>(
                    std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count());
                if (::poll(pfds.data(), pfds.size(), ms) <= 0)
                    break;
                stunReady = true;
                for (BindingProbe& probe : probes)
                    stunReady = probe.receive() && stunReady;
                if (stunReady)
                    break;
            }
        }
        if (stunReady && !tlsReady)
            tlsReady = tcpConnects(tlsAddr);
        if (stunReady && tlsReady)
            break;
        if (Clock::now() >= deadline)
            return failure("did not answer STUN" + std::string(options.tls ? "/TLS" : "") +
                           " within " + std::to_string(options.startTimeout.count()) + " ms");
        if (stunReady)
            std::this_thread::sleep_for(20ms);
    }
    startupTime_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - startTime);
    return {};
}

} // namespace icepunch::support
