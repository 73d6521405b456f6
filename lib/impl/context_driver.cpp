#include "impl/context_driver.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace icepunch::impl {

namespace {

constexpr int kMaxEvents = 256;
thread_local uint64_t tCurrentTurn = 0;
constexpr int64_t kMaxSlackUs = 10000;

// GIOCondition and epoll share the values of IN, PRI, OUT, ERR and HUP.
uint32_t toEpoll(gushort events) {
    return static_cast<uint32_t>(events) & (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP);
}

} // namespace

ContextDriver::ContextDriver() : epoll_(epoll_create1(EPOLL_CLOEXEC)) {
    if (epoll_ < 0) {
        error_ = std::string("epoll_create1: ") + std::strerror(errno);
    }
}

ContextDriver::~ContextDriver() {
    for (auto& cell : cells_) {
        g_main_context_release(cell->context);
        g_main_context_unref(cell->context);
    }
    if (epoll_ >= 0) {
        close(epoll_);
    }
}

GMainContext* ContextDriver::newContext() {
    return g_main_context_new_with_flags(G_MAIN_CONTEXT_FLAGS_OWNERLESS_POLLING);
}

size_t ContextDriver::add(GMainContext* context) {
    auto cell = std::make_unique<Cell>();
    cell->context = g_main_context_ref(context);
    g_main_context_acquire(context);
    // A context with no source polls exactly one fd: its wake-up. Knowing it lets a signal be
    // told from an fd that fired; where it cannot be known every turn re-registers everything.
    gint priority = 0;
    g_main_context_prepare(context, &priority);
    gint timeout = 0;
    GPollFD fds[2];
    if (g_main_context_query(context, priority, &timeout, fds, 2) == 1) {
        cell->wakeFd = fds[0].fd;
    }
    g_main_context_check(context, priority, fds, 0);
    cells_.push_back(std::move(cell));
    size_t index = cells_.size() - 1;
    cells_[index]->heapPos = timers_.size();
    timers_.push_back({INT64_MAX, index});
    cells_[index]->woken = true;
    prepare(index);
    return index;
}

void ContextDriver::prepare(size_t index) {
    Cell& c = *cells_[index];
    bool full = c.woken || c.wakeFd < 0;
    c.woken = false;
    if (c.wakeFd >= 0) {
        // Signals raised while this context was dispatched (its own sources re-arming): they
        // are seen by the query below, so they need no turn of their own.
        uint64_t value = 0;
        if (read(c.wakeFd, &value, sizeof value) == sizeof value) {
            full = true;
        }
    }
    gint priority = 0;
    bool ready = g_main_context_prepare(c.context, &priority);
    c.maxPriority = priority;
    gint timeout = -1;
    c.fds.resize(std::max<size_t>(c.fds.capacity(), 4));
    gint n = g_main_context_query(c.context, priority, &timeout, c.fds.data(),
                                  static_cast<gint>(c.fds.size()));
    if (static_cast<size_t>(n) > c.fds.size()) {
        c.fds.resize(static_cast<size_t>(n));
        n = g_main_context_query(c.context, priority, &timeout, c.fds.data(), n);
    }
    c.fds.resize(static_cast<size_t>(n));
    for (auto& fd : c.fds) {
        fd.revents = 0;
    }
    if (ready) {
        timeout = 0;
    }
    if (timeout < 0) {
        setDeadline(index, INT64_MAX, INT64_MAX);
    } else {
        int64_t in = int64_t(timeout) * 1000;
        int64_t deadline = g_get_monotonic_time() + in;
        setDeadline(index, deadline, deadline + std::min<int64_t>(in / 8, kMaxSlackUs));
    }
    sync(index, full);
}

void ContextDriver::setDeadline(size_t index, int64_t deadlineUs, int64_t latestUs) {
    Cell& c = *cells_[index];
    c.deadlineUs = deadlineUs;
    if (c.latestUs == latestUs) {
        return;
    }
    bool earlier = latestUs < c.latestUs;
    c.latestUs = latestUs;
    timers_[c.heapPos].latestUs = latestUs;
    if (earlier) {
        siftUp(c.heapPos);
    } else {
        siftDown(c.heapPos);
    }
}

void ContextDriver::place(size_t pos, Timer timer) {
    timers_[pos] = timer;
    cells_[timer.index]->heapPos = pos;
}

void ContextDriver::siftUp(size_t pos) {
    Timer t = timers_[pos];
    while (pos > 0) {
        size_t parent = (pos - 1) / 2;
        if (timers_[parent].latestUs <= t.latestUs) {
            break;
        }
        place(pos, timers_[parent]);
        pos = parent;
    }
    place(pos, t);
}

void ContextDriver::siftDown(size_t pos) {
    Timer t = timers_[pos];
    size_t n = timers_.size();
    for (;;) {
        size_t child = 2 * pos + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && timers_[child + 1].latestUs < timers_[child].latestUs) {
            ++child;
        }
        if (t.latestUs <= timers_[child].latestUs) {
            break;
        }
        place(pos, timers_[child]);
        pos = child;
    }
    place(pos, t);
}

void ContextDriver::sync(size_t index, bool full) {
    Cell& c = *cells_[index];
    std::vector<Watch> now;
    now.reserve(c.fds.size());
    for (const auto& fd : c.fds) {
        if (fd.fd >= 0) {
            now.push_back({fd.fd, toEpoll(fd.events)});
        }
    }
    std::sort(now.begin(), now.end());
    size_t kept = 0;
    for (size_t i = 0; i < now.size(); ++i) { // one watch per fd, with every source's events
        if (kept > 0 && now[kept - 1].fd == now[i].fd) {
            now[kept - 1].events |= now[i].events;
        } else {
            now[kept++] = now[i];
        }
    }
    now.resize(kept);
    if (full) {
        ++stats_.resyncs;
    }
    auto old = c.watched.begin();
    for (const auto& w : now) {
        while (old != c.watched.end() && old->fd < w.fd) {
            unwatch(index, old->fd);
            ++old;
        }
        bool known = old != c.watched.end() && old->fd == w.fd;
        bool changed = known && old->events != w.events;
        if (w.fd == c.wakeFd && known) {
            // GLib never closes a context's wake-up fd while the context lives.
        } else if (!known || full || changed) {
            watch(index, w.fd, w.events, known, changed);
        }
        if (known) {
            ++old;
        }
    }
    for (; old != c.watched.end(); ++old) {
        unwatch(index, old->fd);
    }
    c.watched = std::move(now);
}

void ContextDriver::watch(size_t index, int fd, uint32_t events, bool known, bool changed) {
    if (static_cast<size_t>(fd) >= owner_.size()) {
        owner_.resize(static_cast<size_t>(fd) + 64, 0);
    }
    epoll_event e{};
    e.events = events;
    e.data.u64 = (static_cast<uint64_t>(index) << 32) | static_cast<uint32_t>(fd);
    bool mine = owner_[static_cast<size_t>(fd)] == index + 1;
    int rc;
    if (mine && known && !changed) {
        // Still registered (EEXIST, nothing to do) or closed and reopened under the same
        // number (added now). Cheaper than MOD, which polls the file again.
        rc = epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e);
        if (rc != 0 && errno == EEXIST) {
            rc = 0;
        }
    } else if (mine && known) {
        rc = epoll_ctl(epoll_, EPOLL_CTL_MOD, fd, &e);
        if (rc != 0 && errno == ENOENT) { // closed and reopened under the same number
            rc = epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e);
        }
    } else {
        rc = epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &e);
        if (rc != 0 && errno == EEXIST) {
            rc = epoll_ctl(epoll_, EPOLL_CTL_MOD, fd, &e);
        }
    }
    if (rc != 0 && errno == EPERM) {
        // A regular file: poll() says it is always ready, so the context runs every turn.
        setDeadline(index, 0, 0);
    }
    owner_[static_cast<size_t>(fd)] = static_cast<uint32_t>(index + 1);
}

// No EPOLL_CTL_DEL here: the fd is usually closed already and its number may belong to another
// thread's file by now (touching it is a race, and a syscall). A closed file leaves the epoll set
// by itself; one still open reports once more and is dropped then (turn).
void ContextDriver::unwatch(size_t index, int fd) {
    if (static_cast<size_t>(fd) < owner_.size() && owner_[static_cast<size_t>(fd)] == index + 1) {
        owner_[static_cast<size_t>(fd)] = 0;
    }
}

uint64_t ContextDriver::currentTurn() {
    return tCurrentTurn;
}

void ContextDriver::poke(size_t index) {
    if (index < cells_.size()) {
        setDeadline(index, 0, 0);
    }
}

bool ContextDriver::watching(size_t index, int fd) const {
    return static_cast<size_t>(fd) < owner_.size() && owner_[static_cast<size_t>(fd)] == index + 1;
}

void ContextDriver::run(size_t index) {
    ++stats_.iterations;
    Cell& c = *cells_[index]; // cells are never moved: a dispatch may add some
    if (g_main_context_check(c.context, c.maxPriority, c.fds.data(),
                             static_cast<gint>(c.fds.size()))) {
        g_main_context_dispatch(c.context);
    }
    prepare(index);
}

void ContextDriver::turn(std::optional<std::chrono::milliseconds> maxWait) {
    ++stats_.turns;
    uint64_t turnId = stats_.turns;
    tCurrentTurn = turnId;
    int64_t now = g_get_monotonic_time();
    int64_t next = timers_.empty() ? INT64_MAX : timers_[0].latestUs;
    int timeout = -1;
    if (next != INT64_MAX) {
        timeout = next <= now
                      ? 0
                      : static_cast<int>(std::min<int64_t>((next - now + 999) / 1000, INT32_MAX));
    }
    if (maxWait && (timeout < 0 || timeout > maxWait->count())) {
        timeout = static_cast<int>(maxWait->count());
    }
    epoll_event events[kMaxEvents];
    int n = epoll_ < 0 ? 0 : epoll_wait(epoll_, events, kMaxEvents, timeout);
    due_.clear();
    auto schedule = [&](size_t index) {
        Cell& c = *cells_[index];
        if (c.dueTurn != turnId) {
            c.dueTurn = turnId;
            due_.push_back(index);
        }
    };
    for (int i = 0; i < n; ++i) {
        size_t index = static_cast<size_t>(events[i].data.u64 >> 32);
        int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
        if (index >= cells_.size() || !watching(index, fd)) {
            // A watch its context let go of, on a file still open: drop it now. Unless another
            // context watches that number by now: then the stale watch's file lives on only in
            // another process (a fork not yet exec'd), and a DEL by number would remove the
            // other context's watch; it goes when that file does.
            if (static_cast<size_t>(fd) >= owner_.size() || owner_[static_cast<size_t>(fd)] == 0) {
                epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
                ++stats_.dropped;
            }
            continue;
        }
        Cell& c = *cells_[index];
        if (fd == c.wakeFd) {
            c.woken = true;
        }
        for (auto& pollFd : c.fds) {
            if (pollFd.fd == fd) {
                pollFd.revents |= static_cast<gushort>(
                    events[i].events & (toEpoll(pollFd.events) | EPOLLERR | EPOLLHUP));
            }
        }
        schedule(index);
    }
    now = g_get_monotonic_time();
    // A cell whose deadline came has latestUs <= now + kMaxSlackUs: walk the heap down to there.
    visit_.clear();
    if (!timers_.empty()) {
        visit_.push_back(0);
    }
    while (!visit_.empty()) {
        size_t pos = visit_.back();
        visit_.pop_back();
        const Timer& t = timers_[pos];
        if (t.latestUs > now + kMaxSlackUs) {
            continue;
        }
        if (cells_[t.index]->deadlineUs <= now) {
            schedule(t.index);
        }
        for (size_t child = 2 * pos + 1; child <= 2 * pos + 2 && child < timers_.size(); ++child) {
            visit_.push_back(child);
        }
    }
    for (size_t i = 0; i < due_.size(); ++i) {
        run(due_[i]);
    }
}

} // namespace icepunch::impl
