#pragma once

#include <icepunch/event_loop.hpp>

#include "impl/context_driver.hpp"

#include <glib.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace icepunch {

// The private GMainContext and the thread that runs it. Only lib/impl sees this.
struct EventLoop::Impl {
    // netnsFd >= 0: the thread enters that network namespace before running (see startError()).
    Impl(const std::string& name, int netnsFd);
    ~Impl();

    void post(std::function<void()> fn);
    bool invoke(const std::function<void()>& fn);
    const std::string& startError() const { return startError_; }
    bool isLoopThread() const { return std::this_thread::get_id() == threadId_; }
    // Whether the calling thread runs some EventLoop (this one or another).
    static bool onAnyLoopThread();
    // The loop's own context: posted and invoked work, and whatever is not an agent's.
    GMainContext* context() const { return state_->context; }
    // A context for one agent's sources (libnice's sockets and timers, ours), shared with at
    // most kAgentsPerContext - 1 other agents, driven by this loop's thread: a wake-up walks
    // only that context, not every source on the loop. Loop thread only. The reference given
    // back keeps the context; letting go frees its place for another agent.
    std::shared_ptr<GMainContext> agentContext();
    // 4, measured (bench_icepunch scale, 2,000 idle agents, three interleaved runs each): idle CPU
    // 9.5 % with 8 per context, 8.0 % with 4, 7.7 % with 2, because each wake-up's prepare and
    // check walk every source of the context; each context costs an fd (its wake-up eventfd).
    static constexpr unsigned kAgentsPerContext = 4;

    // Held by an agent's asynchronous close until it is done (TURN deallocations answered):
    // when the loop's last owner lets go, the loop keeps running (2 s at most) while any is held.
    std::shared_ptr<void> holdForClose();

private:
    // Shared with the thread, which may outlive Impl when the last owner lets go on the thread.
    struct AgentSlot {
        GMainContext* context = nullptr;
        std::atomic<unsigned> agents{0};
    };
    struct State {
        State();
        ~State();
        GMainContext* context;
        impl::ContextDriver* driver = nullptr; // on the loop thread's stack while it runs
        size_t driverIndex = 0;                // context's index in driver
        // Posted and invoked work, in the order it came from any thread, run by one source of
        // `context` (tasksSource). A post from the loop thread costs a lock and a push: no
        // GSource, no allocation beyond the closure's, no wake-up syscall.
        std::mutex tasksMutex;
        std::deque<std::function<void()>> tasks;
        std::atomic<size_t> taskCount{0};
        GSource* tasksSource = nullptr;
        std::vector<std::shared_ptr<AgentSlot>> slots;
        size_t slotHint = 0;
        std::atomic<int> pendingCloses{0};
        std::atomic<bool> stopped{false};
        bool quit = false; // loop thread only
    };
    static void run(const std::shared_ptr<State>& state);
    void queue(std::function<void()> fn);
    struct TasksSource;
    static gboolean tasksPrepare(GSource* source, gint* timeout);
    static gboolean tasksCheck(GSource* source);
    static gboolean tasksDispatch(GSource* source, GSourceFunc, gpointer);

    std::shared_ptr<State> state_;
    std::thread thread_;
    std::thread::id threadId_;
    std::string startError_;
};

} // namespace icepunch
