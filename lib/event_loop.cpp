#include <icepunch/event_loop.hpp>

#include "impl/event_loop_impl.hpp"

#include <mutex>

namespace icepunch {

EventLoop::EventLoop(const std::string& name) : impl_(std::make_unique<Impl>(name)) {}

EventLoop::~EventLoop() = default;

std::shared_ptr<EventLoop> EventLoop::create(const std::string& name) {
    return std::shared_ptr<EventLoop>(new EventLoop(name));
}

std::shared_ptr<EventLoop> EventLoop::defaultLoop() {
    // Held weakly: the loop lives while agents use it, and no thread outlives the last one.
    static std::mutex mutex;
    static std::weak_ptr<EventLoop> shared;
    std::lock_guard lock(mutex);
    auto loop = shared.lock();
    if (!loop) {
        loop = create("icepunch-loop");
        shared = loop;
    }
    return loop;
}

void EventLoop::post(std::function<void()> fn) {
    impl_->post(std::move(fn));
}

bool EventLoop::invoke(const std::function<void()>& fn) {
    return impl_->invoke(fn);
}

bool EventLoop::isLoopThread() const {
    return impl_->isLoopThread();
}

} // namespace icepunch
