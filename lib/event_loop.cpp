#include <icepunch/event_loop.hpp>

#include "impl/event_loop_impl.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

namespace icepunch {

EventLoop::EventLoop(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

EventLoop::~EventLoop() = default;

std::shared_ptr<EventLoop> EventLoop::create(const std::string& name) {
    return std::shared_ptr<EventLoop>(new EventLoop(std::make_unique<Impl>(name, -1)));
}

Result<std::shared_ptr<EventLoop>> EventLoop::createInNetworkNamespace(const std::string& ns,
                                                                       const std::string& name) {
    if (ns.empty() || ns.find('/') != std::string::npos) {
        return Error{"invalid network namespace name \"" + ns + "\""};
    }
    std::string path = "/run/netns/" + ns;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return Error{"cannot open network namespace " + path + ": " + std::strerror(errno)};
    }
    auto impl = std::make_unique<Impl>(name, fd);
    close(fd);
    if (!impl->startError().empty()) {
        return Error{"cannot enter network namespace " + ns + ": " + impl->startError()};
    }
    return std::shared_ptr<EventLoop>(new EventLoop(std::move(impl)));
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
