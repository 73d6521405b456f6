#include "impl/event_loop_impl.hpp"

#include <pthread.h>
#include <sched.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <chrono>
#include <future>

#if defined(__SANITIZE_THREAD__)
#define ICEPUNCH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ICEPUNCH_TSAN 1
#endif
#endif
#ifdef ICEPUNCH_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace icepunch {

namespace {

thread_local bool tOnLoopThread = false;

// Work handed to the loop thread is ordered by GLib's futex-based GMutex, which ThreadSanitizer
// does not see (GLib is not instrumented): say so, or everything a task touches is a "race".
void handOver([[maybe_unused]] void* work) {
#ifdef ICEPUNCH_TSAN
    __tsan_release(work);
#endif
}
void takeOver([[maybe_unused]] void* work) {
#ifdef ICEPUNCH_TSAN
    __tsan_acquire(work);
#endif
}

struct Task {
    std::function<void()> fn;
};

gboolean runTask(gpointer data) {
    takeOver(data);
    static_cast<Task*>(data)->fn();
    return G_SOURCE_REMOVE;
}

void deleteTask(gpointer data) {
    takeOver(data);
    delete static_cast<Task*>(data);
}

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

EventLoop::Impl::State::State() : context(impl::ContextDriver::newContext()) {}

EventLoop::Impl::State::~State() {
    for (auto& slot : slots) {
        g_main_context_unref(slot->context);
    }
    // Destroys remaining sources: their destroy-notifies release any waiter.
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
        driver.add(state->context);
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

void EventLoop::Impl::post(std::function<void()> fn) {
    auto* task = new Task{std::move(fn)};
    handOver(task);
    attachIdle(state_->context, runTask, task, deleteTask);
}

bool EventLoop::Impl::invoke(const std::function<void()>& fn) {
    if (isLoopThread()) {
        fn();
        return true;
    }
    if (state_->stopped) {
        return false;
    }
    // Fulfilled by running fn or, if the loop drops the task, by the destroy-notify: a waiter is
    // never left hanging.
    struct Waiter {
        const std::function<void()>* fn;
        std::promise<bool> done;
        bool ran = false;
    };
    auto* waiter = new Waiter{&fn, {}, false};
    auto future = waiter->done.get_future();
    handOver(waiter);
    attachIdle(
        state_->context,
        [](gpointer data) -> gboolean {
            takeOver(data);
            auto* w = static_cast<Waiter*>(data);
            (*w->fn)();
            w->ran = true;
            return G_SOURCE_REMOVE;
        },
        waiter,
        [](gpointer data) {
            takeOver(data);
            auto* w = static_cast<Waiter*>(data);
            w->done.set_value(w->ran);
            delete w;
        });
    return future.get();
}

} // namespace icepunch
