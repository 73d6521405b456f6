#pragma once
// Runs many GMainContexts on one thread with one epoll set, so that a wake-up costs what the
// contexts that have work cost, not what every source of the loop costs.
//
// Why: one GMainContext walks every source it holds (prepare, query, check) and polls every fd
// it holds on every iteration. With a thousand agents on one loop each consent packet or timer
// made the loop walk ~4,000 sources and poll 2,000 sockets: 2,000 idle agents kept a core busy.
// Here each agent's sources live in a small context of their own (shared by a few agents); the
// driver keeps every context's fds registered in epoll and its next timeout, and only runs
// prepare/query/check/dispatch on the contexts whose fds fired or whose timeout came.
//
// How it stays correct with GLib's rules:
// - Every context is made with G_MAIN_CONTEXT_FLAGS_OWNERLESS_POLLING: a source attached to a
//   context, from any thread including this one, signals that context's wake-up fd, which is
//   in the epoll set. So a context that is waiting never misses a new source or timeout.
// - New fds only ever appear through a new source or a new poll, which also signal the wake-up
//   fd. When it was signalled, every fd of that context is registered again (an fd that was
//   closed and reopened under the same number is no longer in epoll); when it was not, only the
//   fds that went away are removed.
// - Timers get slack, as the kernel's do: a timeout due in T runs up to min(T/8, 10 ms) late,
//   so timeouts of many contexts that fall close together run in one wake-up. Checks paced
//   every 10 ms are late by a millisecond at most; consent checks (every 4-6 s) of thousands
//   of agents share a wake-up per 10 ms instead of one each.
// - An fd seen by two contexts (closed by one, reopened by another) belongs to the last one
//   that registered it; the other never removes it.
#include <glib.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace icepunch::impl {

class ContextDriver {
public:
    // Call on the thread that will drive the contexts.
    ContextDriver();
    ~ContextDriver();
    ContextDriver(const ContextDriver&) = delete;
    ContextDriver& operator=(const ContextDriver&) = delete;

    // Why the driver cannot run (epoll_create1 failed), or empty.
    const std::string& error() const { return error_; }

    // A context made for this driver (G_MAIN_CONTEXT_FLAGS_OWNERLESS_POLLING).
    static GMainContext* newContext();
    // Drives `context` (made by newContext()) from now on, acquired by this thread; holds a
    // reference until the driver ends. Returns its index.
    size_t add(GMainContext* context);
    size_t size() const { return cells_.size(); }
    // Makes context `index` run at the next turn, which then does not wait: for work this thread
    // gave it without a GLib call that would signal it (a task queued for its source).
    void poke(size_t index);

    // One turn: waits until some context has work or `maxWait` has gone by (forever when
    // empty), then runs every context that has work, once.
    void turn(std::optional<std::chrono::milliseconds> maxWait);

    // The number of the turn the driver of the calling thread is in (0 on a thread without one):
    // what runs inside a dispatch can tell one turn of the loop from the next by it.
    static uint64_t currentTurn();

    // Counters, for tests and benchmarks.
    struct Stats {
        uint64_t turns = 0;      // epoll waits
        uint64_t iterations = 0; // contexts checked (and dispatched when ready)
        uint64_t resyncs = 0;    // full re-registrations after a wake-up
        uint64_t dropped = 0;    // stale watches removed when they fired
    };
    const Stats& stats() const { return stats_; }

private:
    struct Watch {
        int fd;
        uint32_t events;
        bool operator<(const Watch& o) const { return fd < o.fd; }
    };
    struct Cell {
        GMainContext* context = nullptr;
        int wakeFd = -1;
        std::vector<GPollFD> fds; // from the last query, revents filled from epoll
        std::vector<Watch> watched;
        gint maxPriority = 0;
        int64_t deadlineUs = INT64_MAX; // monotonic time of the next timeout
        int64_t latestUs = INT64_MAX;   // ... and how late it may run (timer slack)
        bool woken = false;             // its wake-up fd fired since the last query
        uint64_t dueTurn = 0;           // the turn it was last scheduled in
        size_t heapPos = 0;             // where it is in timers_
    };
    // The cells ordered by latestUs, a binary min-heap: a turn finds its wait and the cells whose
    // timeout came by visiting only the cells due within kMaxSlack, not every cell (with 2,000
    // contexts, scanning them all twice a turn was 30 % of the idle CPU).
    struct Timer {
        int64_t latestUs;
        size_t index;
    };

    void prepare(size_t index);
    void sync(size_t index, bool full);
    void watch(size_t index, int fd, uint32_t events, bool known, bool changed);
    void unwatch(size_t index, int fd);
    bool watching(size_t index, int fd) const;
    void run(size_t index);
    void setDeadline(size_t index, int64_t deadlineUs, int64_t latestUs);
    void siftUp(size_t pos);
    void siftDown(size_t pos);
    void place(size_t pos, Timer timer);

    int epoll_ = -1;
    std::string error_;
    std::vector<std::unique_ptr<Cell>> cells_;
    std::vector<uint32_t> owner_; // fd -> index + 1 of the cell that registered it
    std::vector<size_t> due_;
    std::vector<Timer> timers_;
    std::vector<size_t> visit_; // scratch for the walk of timers_
    Stats stats_;
};

} // namespace icepunch::impl
