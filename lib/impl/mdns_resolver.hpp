#pragma once

// Resolves the `.local` names of mDNS host candidates (RFC 8828) with one-shot multicast DNS
// queries (RFC 6762 5.1) on a GMainContext, asynchronously and in bounded time.

#include <icepunch/result.hpp>

#include <glib.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace icepunch::impl {

// Every call, and every `done`, runs on the thread that runs `context` (the agent's loop).
// One IPv4 UDP socket on an ephemeral port, open while resolutions are in flight: each query goes
// to 224.0.0.251:5353 (TTL 255) on every multicast-capable interface at 0, 200 and 600 ms; the
// responders answer unicast to that port (RFC 6762 6.7). Answers are taken from any address but
// only from source port 5353 (RFC 6762 11).
class MdnsResolver : public std::enable_shared_from_this<MdnsResolver> {
public:
    using Done = std::function<void(Result<std::vector<std::string>>)>;

    // Holds a reference on `context`; opens nothing yet.
    static std::shared_ptr<MdnsResolver> create(GMainContext* context);
    // cancelAll().
    ~MdnsResolver();
    MdnsResolver(const MdnsResolver&) = delete;
    MdnsResolver& operator=(const MdnsResolver&) = delete;

    // Calls `done` exactly once, always later from the context, never from inside resolve():
    // with the IPv4/IPv6 literals of the first answer that has any for `name`, or with an Error:
    // InvalidArgument for a name that is not `.local` (see validateMdnsName), Failed with "no
    // answer from an mDNS responder for NAME within N ms" at the timeout, or Failed when no
    // socket can be opened. Several names (or the same one twice) may be in flight at once.
    // `done` may call into the resolver or destroy it.
    void resolve(std::string name, std::chrono::milliseconds timeout, Done done);

    // Drops every resolution in flight: their `done` are destroyed without being called, timers
    // stop and the socket closes. Safe from inside a `done`.
    void cancelAll();

    std::size_t pending() const { return pending_.size(); }

private:
    struct Request;
    struct TimerTag;

    explicit MdnsResolver(GMainContext* context);

    Status openSocket();
    void closeSocket();
    void schedule(Request& request);
    void onTimer(uint64_t id);
    void send(Request& request);
    void onReadable();
    // Takes the request out and calls its done last: the resolver may be gone after it.
    void finish(uint64_t id, Result<std::vector<std::string>> result);

    static gboolean timerThunk(gpointer data);
    static gboolean readableThunk(gint fd, GIOCondition condition, gpointer data);

    GMainContext* context_;
    int fd_ = -1;
    GSource* readSource_ = nullptr;
    uint64_t nextId_ = 1;
    std::map<uint64_t, std::unique_ptr<Request>> pending_;
};

} // namespace icepunch::impl
