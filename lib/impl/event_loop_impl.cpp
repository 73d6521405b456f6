#include "impl/event_loop_impl.hpp"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <chrono>
#include <future>

namespace icepunch {

namespace {

thread_local bool tOnLoopThread = false;

} // namespace

// The source that runs the loop's tasks: ready while any is queued.
struct EventLoop::Impl::TasksSource {
    GSource source;
    State* state;
};

gboolean EventLoop::Impl::tasksPrepare(GSource* source, gint* timeout) {
    *timeout = -1;
    return reinterpret_cast<TasksSource*>(source)->state->taskCount.load() > 0;
}

gboolean EventLoop::Impl::tasksCheck(GSource* source) {
    return reinterpret_cast<TasksSource*>(source)->state->taskCount.load() > 0;
}

// Runs the tasks queued when it started; those they queue run at the next turn, after the
// loop's other sources had theirs.
gboolean EventLoop::Impl::tasksDispatch(GSource* source, GSourceFunc, gpointer) {
    State& state = *reinterpret_cast<TasksSource*>(source)->state;
    std::deque<std::function<void()>> batch;
    {
        std::lock_guard lock(state.tasksMutex);
        batch.swap(state.tasks);
        state.taskCount.store(0);
    }
    for (auto& task : batch) {
        task();
        task = nullptr; // what it holds goes now, not after the rest of the batch
    }
    return G_SOURCE_CONTINUE;
}

namespace {

gboolean quitLoop(gpointer data) {
    *static_cast<bool*>(data) = true;
    return G_SOURCE_REMOVE;
}

void attachIdle(GMainContext* context, GSourceFunc fn, gpointer data, GDestroyNotify destroy,
                int priority = G_PRIORITY_DEFAULT) {
    GSource* source = g_idle_source_new();
    g_source_set_priority(source, priority);
    g_source_set_callback(source, fn, data, destroy);
    g_source_attach(source, context);
    g_source_unref(source);
}

} // namespace

EventLoop::Impl::State::State() : context(impl::ContextDriver::newContext()) {
    static GSourceFuncs funcs = {tasksPrepare, tasksCheck, tasksDispatch,
                                 nullptr,      nullptr,    nullptr};
    tasksSource = g_source_new(&funcs, sizeof(TasksSource));
    reinterpret_cast<TasksSource*>(tasksSource)->state = this;
    g_source_set_name(tasksSource, "icepunch tasks");
    g_source_attach(tasksSource, context);
}

EventLoop::Impl::State::~State() {
    for (auto& slot : slots) {
        g_main_context_unref(slot->context);
    }
    // Tasks never run are dropped: an invoke's waiter is told so by its task's destruction.
    tasks.clear();
    g_source_destroy(tasksSource);
    g_source_unref(tasksSource);
    // Destroys remaining sources.
    g_main_context_unref(context);
}

EventLoop::Impl::Impl(const std::string& name, int netnsFd) : state_(std::make_shared<State>()) {
    std::promise<std::thread::id> started;
    auto startedFuture = started.get_future();
    thread_ = std::thread([state = state_, name, netnsFd, &started, this] {
        pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
        // Only this thread (and threads it starts) moves: sockets it opens live in that namespace.
        if (netnsFd >= 0 && setns(netnsFd, CLONE_NEWNET) != 0) {
            startError_ = std::strerror(errno);
        }
        tOnLoopThread = true;
        g_main_context_push_thread_default(state->context);
        impl::ContextDriver driver;
        if (!driver.error().empty() && startError_.empty()) {
            startError_ = driver.error();
        }
        state->driverIndex = driver.add(state->context);
        state->driver = &driver;
        started.set_value(std::this_thread::get_id());
        run(state);
        state->driver = nullptr;
        g_main_context_pop_thread_default(state->context);
    });
    threadId_ = startedFuture.get();
}

void EventLoop::Impl::run(const std::shared_ptr<State>& state) {
    while (!state->quit) {
        state->driver->turn(std::nullopt);
    }
    // Let agents that are closing asynchronously finish (bounded), so their sockets are freed.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (state->pendingCloses > 0 && std::chrono::steady_clock::now() < deadline) {
        state->driver->turn(std::chrono::milliseconds(10));
    }
}

std::shared_ptr<GMainContext> EventLoop::Impl::agentContext() {
    auto& state = *state_;
    // The benchmarks' baseline (bench/run): every agent on the loop's one context, as before.
    static const bool single = [] {
        const char* v = std::getenv("ICEPUNCH_BENCH_ONE_CONTEXT");
        return v && *v == '1';
    }();
    if (single) {
        return std::shared_ptr<GMainContext>(g_main_context_ref(state.context),
                                             g_main_context_unref);
    }
    auto& slots = state.slots;
    std::shared_ptr<AgentSlot> slot;
    // The first slot with room from where the last one was found: agents that left make room.
    for (size_t n = 0; n < slots.size() && !slot; ++n) {
        size_t i = (state.slotHint + n) % slots.size();
        if (slots[i]->agents.load() < kAgentsPerContext) {
            slot = slots[i];
            state.slotHint = i;
        }
    }
    if (!slot) {
        slot = std::make_shared<AgentSlot>();
        slot->context = impl::ContextDriver::newContext();
        if (state.driver) {
            state.driver->add(slot->context);
        }
        slots.push_back(slot);
        state.slotHint = slots.size() - 1;
    }
    ++slot->agents;
    return std::shared_ptr<GMainContext>(g_main_context_ref(slot->context),
                                         [slot](GMainContext* context) {
                                             --slot->agents;
                                             g_main_context_unref(context);
                                         });
}

EventLoop::Impl::~Impl() {
    state_->stopped = true;
    attachIdle(state_->context, quitLoop, &state_->quit, nullptr, G_PRIORITY_LOW);
    if (isLoopThread()) {
        // The last owner let go from inside a callback: the thread ends on its own.
        thread_.detach();
    } else if (thread_.joinable()) {
        thread_.join();
    }
}

std::shared_ptr<void> EventLoop::Impl::holdForClose() {
    ++state_->pendingCloses;
    return std::shared_ptr<void>(nullptr, [state = state_](void*) { --state->pendingCloses; });
}

bool EventLoop::Impl::onAnyLoopThread() {
    return tOnLoopThread;
}

void EventLoop::Impl::queue(std::function<void()> fn) {
    auto& state = *state_;
    bool first;
    {
        std::lock_guard lock(state.tasksMutex);
        state.tasks.push_back(std::move(fn));
        first = state.taskCount.fetch_add(1) == 0;
    }
    if (!first) {
        return; // whoever queued the first task since the last run has woken the loop
    }
    if (isLoopThread() && state.driver) {
        state.driver->poke(state.driverIndex);
    } else {
        g_main_context_wakeup(state.context);
    }
}

void EventLoop::Impl::post(std::function<void()> fn) {
    queue(std::move(fn));
}

bool EventLoop::Impl::invoke(const std::function<void()>& fn) {
    if (isLoopThread()) {
        fn();
        return true;
    }
    if (state_->stopped) {
        return false;
    }
    // Fulfilled by running fn or, if the loop drops the task, by the task's destruction: a
    // waiter is never left hanging.
    struct Waiter {
        std::promise<bool> done;
        bool ran = false;
        ~Waiter() { done.set_value(ran); }
    };
    auto waiter = std::make_shared<Waiter>();
    auto future = waiter->done.get_future();
    queue([waiter = std::move(waiter), &fn] { // the task holds the only reference
        fn();
        waiter->ran = true;
    });
    return future.get();
}

} // namespace icepunch
