#pragma once

#include <icepunch/export.hpp>
#include <icepunch/result.hpp>

#include <functional>
#include <memory>
#include <string>

namespace icepunch {

// One private event loop on one thread. Many agents share a loop; there is no thread per agent.
// The loop stops and joins its thread when the last shared_ptr to it goes away.
class ICEPUNCH_EXPORT EventLoop {
public:
    struct ICEPUNCH_NO_EXPORT Impl;

    static std::shared_ptr<EventLoop> create(const std::string& name = "icepunch");
    // A loop whose thread lives in the named Linux network namespace (as made by `ip netns add`,
    // /run/netns/<ns>): agents on it gather and send there. For labs and test tools; needs root.
    static Result<std::shared_ptr<EventLoop>> createInNetworkNamespace(const std::string& ns,
                                                                       const std::string& name);
    // The process's shared loop, made on first use and kept alive by whoever holds it.
    static std::shared_ptr<EventLoop> defaultLoop();

    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Runs fn on the loop thread, soon. Safe from any thread.
    void post(std::function<void()> fn);
    // Runs fn on the loop thread and waits for it; runs it inline when called on the loop thread.
    // Returns false, without running fn, when the loop has stopped.
    bool invoke(const std::function<void()>& fn);
    bool isLoopThread() const;

    Impl& impl() { return *impl_; }

private:
    ICEPUNCH_NO_EXPORT explicit EventLoop(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

} // namespace icepunch
