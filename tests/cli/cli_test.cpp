// The icepunch command-line tool, run as a user would, against coturn started per suite.

#include "coturn_process.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using icepunch::support::CoturnOptions;
using icepunch::support::CoturnProcess;

namespace {

const std::string kUser = "cliuser";
const std::string kPassword = "clipass";

struct Outcome {
    int status = -1;
    std::string out, err;
    long ms = 0;
};

std::string readFile(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Runs `icepunch <args>` through /bin/sh with stdin from `input`; captures both streams.
class Cli {
public:
    Cli() {
        const char* bin = std::getenv("ICEPUNCH_CLI");
        binary_ = bin ? bin : "icepunch";
        char dir[] = "/tmp/icepunch-cli-test.XXXXXX";
        dir_ = ::mkdtemp(dir);
    }
    ~Cli() { std::filesystem::remove_all(dir_); }

    std::string path(const std::string& name) const { return dir_ + "/" + name; }

    Outcome run(const std::string& args, const std::string& input = "",
                const std::string& tag = "run") const {
        std::string in = path(tag + ".in"), out = path(tag + ".out"), err = path(tag + ".err");
        std::ofstream(in) << input;
        std::string command =
            "'" + binary_ + "' " + args + " <'" + in + "' >'" + out + "' 2>'" + err + "'";
        auto start = Clock::now();
        int raw = std::system(command.c_str());
        Outcome r;
        r.ms = static_cast<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count());
        r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
        r.out = readFile(out);
        r.err = readFile(err);
        return r;
    }

private:
    std::string binary_;
    std::string dir_;
};

std::string describe(const Outcome& r) {
    return "exit " + std::to_string(r.status) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

class CliTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        CoturnOptions o;
        o.user = kUser;
        o.password = kPassword;
        o.tls = true;
        o.verbose = true; // session lines, for liveAllocations()
        o.extraArgs = {"--allow-loopback-peers"};
        auto started = CoturnProcess::start(o);
        ASSERT_TRUE(started) << started.error().message;
        turn_ = std::move(*started).release();
    }
    static void TearDownTestSuite() {
        delete turn_;
        turn_ = nullptr;
    }
    void SetUp() override { ASSERT_NE(turn_, nullptr); }

    static std::string creds() { return "--user " + kUser + " --pass " + kPassword; }

    // Two connect processes through files; side B echoes (started `echoDelay` after A when
    // given), side A pipes `message` in (and takes `extraA` too). B ends 2 s after the last
    // datagram.
    void connectPair(const std::string& extra, const std::string& message, Outcome& a, Outcome& b,
                     std::chrono::milliseconds echoDelay = 0ms, const std::string& extraA = "") {
        std::string files =
            " --local-file " + cli_.path("a.sdp") + " --remote-file " + cli_.path("b.sdp");
        std::string filesB =
            " --local-file " + cli_.path("b.sdp") + " --remote-file " + cli_.path("a.sdp");
        auto peer = std::async(std::launch::async, [&] {
            std::this_thread::sleep_for(echoDelay);
            return cli_.run("connect --role controlled --echo --idle 2 --json --timeout 20" +
                                filesB + " " + extra,
                            "", "b");
        });
        a = cli_.run("connect --role controlling --json --timeout 20" + files + " " + extra + " " +
                         extraA,
                     message, "a");
        b = peer.get();
    }

    // The server's allocations once the tools exited, given up to 5 s to go (coturn's log is
    // the only sign: no event to wait on).
    static int liveAllocationsAfterExit() {
        auto until = Clock::now() + 5s;
        while (turn_->liveAllocations() > 0 && Clock::now() < until)
            std::this_thread::sleep_for(20ms);
        return turn_->liveAllocations();
    }

    // What side A wrote after its result line.
    static std::string dataAfterResultLine(const Outcome& a) {
        auto nl = a.out.find('\n');
        return nl == std::string::npos ? std::string() : a.out.substr(nl + 1);
    }

    static CoturnProcess* turn_;
    Cli cli_;
};

CoturnProcess* CliTest::turn_ = nullptr;

TEST_F(CliTest, UsageErrorsExitTwo) {
    EXPECT_EQ(cli_.run("").status, 2);
    EXPECT_EQ(cli_.run("no-such-command").status, 2);
    auto r = cli_.run("connect --local-file x --remote-file y");
    EXPECT_EQ(r.status, 2) << describe(r);
    EXPECT_TRUE(contains(r.err, "--role")) << r.err;
    r = cli_.run("gather --stun stun:bad:host:uri:");
    EXPECT_EQ(r.status, 2) << describe(r);
    EXPECT_TRUE(contains(r.err, "bad --stun URI")) << r.err;
    EXPECT_EQ(cli_.run("gather --bogus").status, 2);
    EXPECT_EQ(cli_.run("turn-check --turn turn:127.0.0.1:1").status, 2); // no credentials
    EXPECT_EQ(cli_.run("nat").status, 2);
    EXPECT_EQ(cli_.run("connect --role sideways --stdio").status, 2);
    for (const char* command : {"connect", "gather", "turn-check", "nat"}) {
        r = cli_.run(std::string(command) + " --help");
        EXPECT_EQ(r.status, 0) << command;
        EXPECT_TRUE(contains(r.out, "usage: icepunch")) << command;
    }
}

TEST_F(CliTest, ConnectDirectEchoesThroughFiles) {
    // Raw datagrams: every line (with its "\n") goes out as one, a line longer than 1200 bytes
    // in 1200-byte pieces, an unterminated last line as it is; the echo brings back the bytes.
    std::string longLine(3000, 'L');
    longLine += "\n";
    std::string message = "hello over ice\n\nsecond line\r\n" + longLine + "no newline at the end";
    Outcome a, b;
    connectPair("--interface 127.0.0.1", message, a, b);
    ASSERT_EQ(a.status, 0) << describe(a) << describe(b);
    ASSERT_EQ(b.status, 0) << describe(b);
    auto nl = a.out.find('\n');
    ASSERT_NE(nl, std::string::npos) << a.out;
    std::string json = a.out.substr(0, nl);
    EXPECT_TRUE(json.starts_with("{\"connected\":true,\"ms_to_connected\":")) << json;
    // Trickled: the peer's check may come before its candidate line (then the remote is prflx).
    EXPECT_TRUE(contains(json, "\"local_type\":\"host\",\"remote_type\":\"host\"") ||
                contains(json, "\"local_type\":\"host\",\"remote_type\":\"prflx\""))
        << json;
    EXPECT_TRUE(contains(json, "\"local\":\"127.0.0.1:")) << json;
    EXPECT_TRUE(contains(json, "\"transport\":\"udp\"")) << json;
    EXPECT_FALSE(contains(json, "relay_protocol")) << json;
    EXPECT_EQ(dataAfterResultLine(a), message);
    // The echo side writes its result line and no data: at most event lines after it (A's
    // leaving may be seen as a disconnect before --idle ends, on a slow build).
    EXPECT_TRUE(b.out.starts_with("{\"connected\":true,")) << b.out;
    std::istringstream lines(b.out.substr(b.out.find('\n') + 1));
    for (std::string line; std::getline(lines, line);) {
        EXPECT_TRUE(line.starts_with("{\"event\":")) << b.out;
    }
    EXPECT_TRUE(contains(readFile(cli_.path("a.sdp")), "a=end-of-candidates\r\n"));
}

TEST_F(CliTest, ConnectRefusesAnOversizedPeerDescriptionWithoutReadingIt) {
    std::string remote = cli_.path("huge.sdp");
    {
        std::ofstream out(remote, std::ios::binary);
        std::string chunk(1 << 20, 'x');
        for (int i = 0; i < 64; ++i) // 64 MiB on one line
            out << chunk;
    }
    auto r = cli_.run("connect --role controlling --json --timeout 20 --interface 127.0.0.1 "
                      "--local-file " +
                      cli_.path("mine.sdp") + " --remote-file " + remote);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.out, "\"connected\":false")) << describe(r);
    EXPECT_TRUE(contains(r.out, "over the limit of 262144")) << describe(r);
    // Over stdin, an endless line is cut off at the limit too.
    r = cli_.run("connect --role controlled --stdio --json --timeout 20 --interface 127.0.0.1",
                 std::string(1 << 20, 'y'));
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.out, "over the limit of 262144")) << describe(r);
}

TEST_F(CliTest, ConnectEchoSideStartedLaterLosesNothing) {
    // A is connected and sends at once; B, started 1.5 s later, may get the datagrams before it
    // is connected itself: it queues them and echoes them all once it is.
    std::string message;
    for (int i = 0; i < 100; ++i)
        message += "datagram " + std::to_string(i) + "\n";
    Outcome a, b;
    connectPair("--interface 127.0.0.1", message, a, b, 1500ms);
    ASSERT_EQ(a.status, 0) << describe(a) << describe(b);
    ASSERT_EQ(b.status, 0) << describe(b);
    EXPECT_GE(a.ms, 1500) << describe(a);
    EXPECT_EQ(dataAfterResultLine(a), message) << describe(a);
}

TEST_F(CliTest, ConnectRelayOnlyEchoes) {
    Outcome a, b;
    connectPair("--interface 127.0.0.1 --relay-only --turn " + turn_->uri("turn") + " " + creds(),
                "relayed hello\n", a, b);
    ASSERT_EQ(a.status, 0) << describe(a) << describe(b);
    EXPECT_TRUE(contains(a.out, "\"local_type\":\"relay\"")) << a.out;
    EXPECT_TRUE(contains(a.out, "\"relay_protocol\":\"udp\",\"relay_server\":\"turn:")) << a.out;
    EXPECT_EQ(dataAfterResultLine(a), "relayed hello\n") << a.out;
    EXPECT_EQ(b.status, 0) << describe(b);
    // Both exited after a call: each freed its allocation on the way out (the tool waits 2 s at
    // most for the deallocations to be answered).
    EXPECT_EQ(liveAllocationsAfterExit(), 0) << turn_->logTail(40);
}

// --dtls: the description carries the fingerprint, the data goes encrypted both ways (over
// TURN/TCP here, the path a restrictive network leaves), and the result line says how.
TEST_F(CliTest, ConnectDtlsEchoesEncryptedAndSaysHowItIsSecured) {
    for (const std::string& path : std::vector<std::string>{
             "--interface 127.0.0.1", "--interface 127.0.0.1 --relay-only --turn " +
                                          turn_->uri("turn", "tcp") + " " + creds()}) {
        // Each run with files of its own: a peer reading the last run's description would
        // rightly take the new one for a changed certificate.
        std::filesystem::remove(cli_.path("a.sdp"));
        std::filesystem::remove(cli_.path("b.sdp"));
        Outcome a, b;
        std::string message = "secret line one\nsecret line two\n";
        connectPair(path + " --dtls", message, a, b);
        ASSERT_EQ(a.status, 0) << describe(a) << describe(b);
        ASSERT_EQ(b.status, 0) << describe(b);
        std::string json = a.out.substr(0, a.out.find('\n'));
        EXPECT_TRUE(contains(json, "\"dtls\":\"1.2\",\"cipher\":\"ECDHE-ECDSA-")) << json;
        EXPECT_TRUE(contains(json, "\"srtp_profile\":\"SRTP_AEAD_AES_128_GCM\"")) << json;
        EXPECT_TRUE(contains(json, "\"peer_fingerprint_verified\":true")) << json;
        EXPECT_TRUE(contains(json, "\"dtls_role\":\"server\"")) << json; // controlling, actpass
        EXPECT_TRUE(contains(json, "\"ms_to_secure\":")) << json;
        EXPECT_TRUE(contains(b.out, "\"dtls_role\":\"client\"")) << b.out;
        EXPECT_EQ(dataAfterResultLine(a), message);
        auto description = readFile(cli_.path("a.sdp"));
        EXPECT_TRUE(contains(description, "a=fingerprint:sha-256 ")) << description;
        EXPECT_TRUE(contains(description, "a=setup:actpass\r\n")) << description;
    }
}

// The peer's file names another certificate than the one it presents (a man in the middle, or
// a stale description): both sides say so and exit 1; nothing is delivered.
TEST_F(CliTest, ConnectDtlsFingerprintMismatchFailsOnBothSides) {
    std::string aFile = cli_.path("a.sdp"), bFile = cli_.path("b.sdp");
    std::string forged = cli_.path("a-forged.sdp");
    std::atomic<bool> stop{false};
    // A's description as B reads it: the same, but for the fingerprint's last byte.
    auto forger = std::async(std::launch::async, [&] {
        while (!stop) {
            std::string text = readFile(aFile);
            auto at = text.find("a=fingerprint:sha-256 ");
            if (at != std::string::npos && contains(text, "a=end-of-candidates")) {
                auto end = text.find("\r\n", at);
                text[end - 1] = text[end - 1] == '0' ? '1' : '0';
                std::ofstream(forged + ".tmp") << text;
                std::filesystem::rename(forged + ".tmp", forged);
                return;
            }
            std::this_thread::sleep_for(5ms);
        }
    });
    auto peer = std::async(std::launch::async, [&] {
        return cli_.run("connect --role controlled --echo --idle 2 --json --timeout 15 --dtls "
                        "--interface 127.0.0.1 --local-file " +
                            bFile + " --remote-file " + forged,
                        "", "b");
    });
    auto a = cli_.run("connect --role controlling --json --timeout 15 --dtls --interface "
                      "127.0.0.1 --local-file " +
                          aFile + " --remote-file " + bFile,
                      "must never arrive\n", "a");
    auto b = peer.get();
    stop = true;
    forger.get();
    EXPECT_EQ(b.status, 1) << describe(b);
    EXPECT_TRUE(b.out.starts_with("{\"connected\":false,\"error\":\"not secure: DTLS handshake "
                                  "failed: the peer's certificate does not match the fingerprint"))
        << b.out;
    EXPECT_EQ(a.status, 1) << describe(a);
    EXPECT_TRUE(contains(a.out, "{\"connected\":false,\"error\":\"not secure: ")) << a.out;
    EXPECT_TRUE(contains(a.out, "fingerprint")) << a.out;
    EXPECT_FALSE(contains(a.out + b.out, "must never arrive"));
}

// The cause of a failure is printed, not "timed out": the TURN server's 401, then both sides'
// candidates and the pairs.
TEST_F(CliTest, ConnectRelayOnlyWithWrongPasswordPrintsTheServersAnswer) {
    Outcome a, b;
    connectPair("--interface 127.0.0.1 --relay-only --turn " + turn_->uri("turn") + " --user " +
                    kUser + " --pass not-the-password",
                "", a, b);
    EXPECT_EQ(a.status, 1) << describe(a);
    EXPECT_TRUE(contains(a.out, "\"connected\":false")) << describe(a);
    EXPECT_TRUE(contains(a.out, "401 Unauthorized")) << describe(a);
    EXPECT_TRUE(contains(a.out, "\"local_candidates\":[")) << describe(a);
    EXPECT_TRUE(contains(a.err, "candidate pairs")) << describe(a);
    EXPECT_FALSE(contains(a.out, "timed out")) << describe(a);
    EXPECT_EQ(b.status, 1) << describe(b);
}

// A direct call that cannot work (the peer's only candidate is a port nobody answers on) fails
// listing every candidate and pair.
TEST_F(CliTest, ConnectFailureListsCandidatesAndPairs) {
    std::string remote = cli_.path("dead.sdp");
    std::ofstream(remote) << "a=ice-ufrag:dead\r\na=ice-pwd:deaddeaddeaddeaddeaddead\r\n"
                             "a=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host\r\n"
                             "a=candidate:2 1 UDP 2130706431 peer.local 9 typ host\r\n"
                             "a=end-of-candidates\r\n";
    auto r = cli_.run("connect --role controlling --json --timeout 4 --interface 127.0.0.1 "
                      "--no-mdns "
                      "--local-file " +
                      cli_.path("mine2.sdp") + " --remote-file " + remote);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.out, "\"remote_candidates\":[\"candidate:1 1 UDP")) << describe(r);
    EXPECT_TRUE(contains(r.out, "\"pairs\":[{\"local\":\"127.0.0.1:")) << describe(r);
    EXPECT_TRUE(contains(r.err, "skipped a=candidate:2")) << describe(r);
    EXPECT_FALSE(contains(r.out, "\"remote\":\"peer.local:9\"")) << describe(r);
    EXPECT_TRUE(contains(r.err, "peer.local")) << describe(r);
}

TEST_F(CliTest, ConnectBenchAgainstEcho) {
    Outcome a, b;
    connectPair("--interface 127.0.0.1", "", a, b, 0ms, "--bench 1");
    ASSERT_EQ(a.status, 0) << describe(a) << describe(b);
    EXPECT_EQ(b.status, 0) << describe(b);
    std::string result = dataAfterResultLine(a);
    EXPECT_TRUE(result.starts_with("{\"seconds\":")) << a.out;
    EXPECT_TRUE(contains(result, "\"up_bytes_per_s\":")) << a.out;
    EXPECT_TRUE(contains(result, "\"down_bytes_per_s\":")) << a.out;
    EXPECT_TRUE(contains(result, "\"loss_pct\":")) << a.out;
    EXPECT_FALSE(contains(result, "\"echoed\":0,")) << a.out;
}

TEST_F(CliTest, ConnectPingAndStdio) {
    // Side B over --stdio: its description is fed by hand from side A's file.
    std::string files =
        " --local-file " + cli_.path("a.sdp") + " --remote-file " + cli_.path("b.sdp");
    auto peer = std::async(std::launch::async, [&] {
        return cli_.run("connect --role controlling --ping 3 --json --interface 127.0.0.1 "
                        "--timeout 20" +
                            files,
                        "", "a");
    });
    // B reads A's description from stdin; a shell pipeline waits for A's file to appear.
    std::string script = cli_.path("b.sh");
    std::ofstream(script) << "i=0; while [ ! -f '" << cli_.path("a.sdp")
                          << "' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n"
                          << "{ cat '" << cli_.path("a.sdp") << "'; sleep 3; } | \"$1\" connect "
                          << "--role controlled --stdio --echo --idle 1 --interface 127.0.0.1 "
                          << "--timeout 20 > '" << cli_.path("b.stdout") << "'\n"
                          << "echo done\n";
    // Our own B description goes to A's remote file from B's stdout, once complete.
    std::string mover = "i=0; while ! grep -q end-of-candidates '" + cli_.path("b.stdout") +
                        "' 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cp '" +
                        cli_.path("b.stdout") + "' '" + cli_.path("b.tmp") + "' && mv '" +
                        cli_.path("b.tmp") + "' '" + cli_.path("b.sdp") + "'";
    auto move = std::async(std::launch::async, [&] { return std::system(mover.c_str()); });
    const char* bin = std::getenv("ICEPUNCH_CLI");
    int rc =
        std::system(("sh '" + script + "' '" + std::string(bin ? bin : "icepunch") + "'").c_str());
    move.get();
    Outcome a = peer.get();
    EXPECT_EQ(WEXITSTATUS(rc), 0);
    ASSERT_EQ(a.status, 0) << describe(a);
    EXPECT_TRUE(contains(a.out, "\"connected\":true")) << a.out;
    EXPECT_TRUE(contains(a.out, "{\"pings\":3,\"answered\":3,\"lost\":0,\"rtt_min_ms\":")) << a.out;
    EXPECT_TRUE(readFile(cli_.path("b.stdout")).starts_with("a=ice-ufrag:"));
}

// ICE restart through the file contract: SIGUSR1 restarts side A (as a lost path would); A
// rewrites its file with new credentials, B sees the file replaced, answers with its own restart,
// and the call goes on over the new pair, the old one carrying the pings meanwhile.
TEST_F(CliTest, ConnectRestartRewritesTheFileAndTheCallGoesOn) {
    std::string files =
        " --local-file " + cli_.path("a.sdp") + " --remote-file " + cli_.path("b.sdp");
    std::string filesB =
        " --local-file " + cli_.path("b.sdp") + " --remote-file " + cli_.path("a.sdp");
    auto peer = std::async(std::launch::async, [&] {
        return cli_.run("connect --role controlled --echo --idle 2 --json --timeout 20 "
                        "--interface 127.0.0.1 --no-mdns" +
                            filesB,
                        "", "b");
    });
    // A in the background of a shell, so that the test has its PID to signal.
    const char* bin = std::getenv("ICEPUNCH_CLI");
    std::string pidFile = cli_.path("a.pid");
    std::string command = "'" + std::string(bin ? bin : "icepunch") +
                          "' connect --role controlling --json --timeout 20 --interface "
                          "127.0.0.1 --no-mdns --ping 250" +
                          files + " </dev/null >'" + cli_.path("a.out") + "' 2>'" +
                          cli_.path("a.err") + "' & echo $! >'" + pidFile + "'; wait $!";
    auto side = std::async(std::launch::async, [&] { return std::system(command.c_str()); });
    auto waitFor = [&](const std::string& file, const std::string& text) {
        for (int i = 0; i < 400; ++i) { // 10 s
            if (contains(readFile(file), text))
                return true;
            std::this_thread::sleep_for(25ms); // files raise no event
        }
        return false;
    };
    ASSERT_TRUE(waitFor(cli_.path("a.out"), "\"connected\":true")) << readFile(cli_.path("a.err"));
    std::string before = readFile(cli_.path("a.sdp"));
    int pid = std::stoi(readFile(pidFile));
    ASSERT_EQ(::kill(pid, SIGUSR1), 0);
    int rc = side.get();
    Outcome b = peer.get();
    std::string out = readFile(cli_.path("a.out"));
    std::string why = "A:\n" + out + readFile(cli_.path("a.err")) + "\nB:\n" + describe(b);
    ASSERT_EQ(WEXITSTATUS(rc), 0) << why;
    EXPECT_EQ(b.status, 0) << why;
    EXPECT_TRUE(contains(out, "{\"event\":\"restarted\",\"t_ms\":")) << why;
    EXPECT_TRUE(contains(out, "\"reason\":\"restart requested by the app\"")) << why;
    EXPECT_TRUE(contains(out, "{\"event\":\"selected\",")) << why;
    EXPECT_TRUE(contains(b.out, "\"reason\":\"the peer restarted ICE (new ufrag")) << why;
    // The result line stays the first; the ping result is the last.
    EXPECT_TRUE(out.starts_with("{\"connected\":true,")) << out;
    EXPECT_TRUE(contains(out, "{\"pings\":250,")) << why;
    // Make before break: the pings go on through the old pair until the new one takes over.
    auto at = out.find("\"lost\":");
    ASSERT_NE(at, std::string::npos) << out;
    EXPECT_LE(std::stoi(out.substr(at + 7)), 5) << why;
    // The file was written anew: other credentials, the candidates and end-of-candidates again.
    std::string after = readFile(cli_.path("a.sdp"));
    EXPECT_NE(after.substr(0, after.find('\n')), before.substr(0, before.find('\n')));
    EXPECT_TRUE(after.starts_with("a=ice-ufrag:")) << after;
    EXPECT_TRUE(contains(after, "a=end-of-candidates")) << after;
}

TEST_F(CliTest, GatherReportsCandidatesAndServers) {
    auto r = cli_.run("gather --interface 127.0.0.1 --stun " + turn_->uri("stun") + " --turn " +
                      turn_->uri("turn") + " " + creds());
    ASSERT_EQ(r.status, 0) << describe(r);
    EXPECT_TRUE(contains(r.out, "host ")) << r.out;
    EXPECT_TRUE(contains(r.out, "relay")) << r.out;
    EXPECT_TRUE(contains(r.out, "server " + turn_->uri("turn") + ": reachable")) << r.out;
    EXPECT_TRUE(contains(r.out, "server " + turn_->uri("stun") + ": reachable")) << r.out;

    r = cli_.run("gather --json --interface 127.0.0.1 --turn " + turn_->uri("turn") + " " +
                 creds());
    ASSERT_EQ(r.status, 0) << describe(r);
    EXPECT_TRUE(contains(r.out, "{\"event\":\"candidate\",")) << r.out;
    EXPECT_TRUE(contains(r.out, "\"type\":\"relay\"")) << r.out;
    EXPECT_TRUE(
        contains(r.out, "{\"event\":\"server\",\"uri\":\"" + turn_->uri("turn") + "\",\"ok\":true"))
        << r.out;
}

// A tool that exits right after gathering still frees what it allocated: the process waits
// (2 s at most) for libnice's deallocations to be answered.
TEST_F(CliTest, GatherLeavesNoAllocationBehind) {
    auto r = cli_.run("gather --interface 127.0.0.1 " + creds() + " --ca " + turn_->caFile() +
                      " --turn " + turn_->uri("turn") + " --turn " + turn_->uri("turn", "tcp") +
                      " --turn " + turn_->uri("turns"));
    ASSERT_EQ(r.status, 0) << describe(r);
    EXPECT_EQ(liveAllocationsAfterExit(), 0) << turn_->logTail(40);
}

TEST_F(CliTest, GatherWrongPasswordSays401) {
    auto r = cli_.run("gather --interface 127.0.0.1 --turn " + turn_->uri("turn") + " --user " +
                      kUser + " --pass wrong");
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.out, "FAILED, 401 Unauthorized")) << r.out;
}

TEST_F(CliTest, GatherDeadServerFailsWithinTimeout) {
    CoturnOptions o;
    o.stunOnly = true;
    auto dead = CoturnProcess::start(o);
    ASSERT_TRUE(dead) << dead.error().message;
    std::string uri = (*dead)->uri("stun");
    (*dead)->stop();
    auto r = cli_.run("gather --interface 127.0.0.1 --timeout 1.5 --stun " + uri);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.out, "server " + uri + ": FAILED")) << r.out;
    EXPECT_LT(r.ms, 4500) << describe(r);
}

TEST_F(CliTest, TurnCheckUdpTcpTls) {
    for (const std::string& uri :
         {turn_->uri("turn"), turn_->uri("turn", "tcp"), turn_->uri("turns")}) {
        auto r = cli_.run("turn-check --turn " + uri + " " + creds() + " --ca " + turn_->caFile() +
                          " --timeout 5");
        EXPECT_EQ(r.status, 0) << uri << "\n" << describe(r);
        EXPECT_TRUE(contains(r.out, "relayed both ways")) << r.out;
        EXPECT_TRUE(contains(r.out, "relayed address   127.0.0.1:")) << r.out;
        EXPECT_TRUE(contains(r.out, "RTT via relay")) << r.out;

        r = cli_.run("turn-check --json --turn " + uri + " --user " + kUser +
                     " --pass wrong --ca " + turn_->caFile() + " --timeout 5");
        EXPECT_EQ(r.status, 1) << uri << "\n" << describe(r);
        EXPECT_TRUE(contains(r.out, "{\"ok\":false")) << r.out;
        EXPECT_TRUE(contains(r.err, "401 Unauthorized")) << r.err;
    }
}

TEST_F(CliTest, TurnCheckTlsUntrustedCertificate) {
    // Without --ca the system store does not know the generated CA.
    auto r = cli_.run("turn-check --turn " + turn_->uri("turns") + " " + creds() + " --timeout 5");
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.err, "certificate")) << r.err;
}

TEST_F(CliTest, NatOnLoopbackIsOpenInternet) {
    CoturnOptions o;
    o.stunOnly = true;
    o.altListenAddress = "127.0.0.2";
    auto stun = CoturnProcess::start(o);
    ASSERT_TRUE(stun) << stun.error().message;
    auto r = cli_.run("nat --json --server " + (*stun)->uri("stun"));
    ASSERT_EQ(r.status, 0) << describe(r);
    EXPECT_TRUE(contains(r.out, "\"behind_nat\":false,\"rfc5780\":true")) << r.out;
    EXPECT_TRUE(contains(r.out, "\"other\":\"127.0.0.2:")) << r.out;
    EXPECT_TRUE(contains(r.out, "\"mapping\":\"endpoint-independent\"")) << r.out;
    EXPECT_TRUE(contains(r.out, "\"filtering\":\"endpoint-independent\"")) << r.out;
    EXPECT_TRUE(contains(r.out, "\"nat_type\":\"open internet\"")) << r.out;

    // Without RFC 5780 it says so and still reports the mapped address; no NAT but no
    // filtering result either: open internet or a firewall, so the type is unknown.
    r = cli_.run("nat --server " + turn_->uri("stun"));
    ASSERT_EQ(r.status, 0) << describe(r);
    EXPECT_TRUE(contains(r.out, "no OTHER-ADDRESS")) << r.out;
    EXPECT_TRUE(contains(r.out, "behind NAT      no")) << r.out;
    EXPECT_TRUE(contains(r.out, "NAT type        unknown")) << r.out;
}

TEST_F(CliTest, NatWithoutAnswerIsUdpBlocked) {
    CoturnOptions o;
    o.stunOnly = true;
    auto dead = CoturnProcess::start(o);
    ASSERT_TRUE(dead) << dead.error().message;
    std::string uri = (*dead)->uri("stun");
    (*dead)->stop();
    auto r = cli_.run("nat --timeout 0.5 --server " + uri);
    EXPECT_EQ(r.status, 1) << describe(r);
    EXPECT_TRUE(contains(r.out, "UDP blocked")) << r.out;
    EXPECT_LT(r.ms, 3000);
}

} // namespace
