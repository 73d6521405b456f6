#include "impl/log_impl.hpp"

#include <debug.h>
#include <glib.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>

namespace icepunch {

std::string_view toString(LogLevel level) {
    switch (level) {
    case LogLevel::Error:
        return "error";
    case LogLevel::Warning:
        return "warning";
    case LogLevel::Info:
        return "info";
    case LogLevel::Debug:
        return "debug";
    }
    return "unknown";
}

std::ostream& operator<<(std::ostream& os, LogLevel level) {
    return os << toString(level);
}

namespace impl {

namespace {

constexpr std::size_t kMinSecretLength = 4; // shorter ones would blank out ordinary words

struct State {
    std::mutex mutex;
    std::shared_ptr<const LogHandler> handler;
    LogLevel maxLevel = LogLevel::Warning;
    std::map<std::string, int> secrets; // with how many registrations hold each
    bool libniceHandlers = false;
    bool glibHandlers = false;
};

State& state() {
    static State* s = new State; // never destroyed: g_log handlers may run during exit
    return *s;
}

LogLevel fromGlib(GLogLevelFlags flags) {
    if (flags & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL)) {
        return LogLevel::Error;
    }
    if (flags & G_LOG_LEVEL_WARNING) {
        return LogLevel::Warning;
    }
    if (flags & (G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO)) {
        return LogLevel::Info;
    }
    return LogLevel::Debug;
}

void glibLine(const gchar* domain, GLogLevelFlags flags, const gchar* message, gpointer) {
    std::string text = redact(message ? message : "");
    std::shared_ptr<const LogHandler> handler;
    LogLevel maxLevel;
    {
        State& s = state();
        std::lock_guard lock(s.mutex);
        handler = s.handler;
        maxLevel = s.maxLevel;
    }
    if (!handler) {
        g_log_default_handler(domain, flags, text.c_str(), nullptr);
        return;
    }
    LogLevel level = fromGlib(flags);
    if (level <= maxLevel) {
        (*handler)(level, domain ? domain : "", text);
    }
}

constexpr auto kAllLevels =
    static_cast<GLogLevelFlags>(G_LOG_LEVEL_MASK | G_LOG_FLAG_FATAL | G_LOG_FLAG_RECURSION);

void installFor(std::initializer_list<const char*> domains) {
    for (const char* domain : domains) {
        g_log_set_handler(domain, kAllLevels, glibLine, nullptr);
    }
}

} // namespace

void installLibniceLogHandlers() {
    State& s = state();
    std::lock_guard lock(s.mutex);
    if (!s.libniceHandlers) {
        installFor(
            {"libnice", "libnice-stun", "libnice-socket", "libnice-random", "libnice-pseudotcp"});
        s.libniceHandlers = true;
    }
}

bool logEnabled(LogLevel level) {
    State& s = state();
    std::lock_guard lock(s.mutex);
    return level <= s.maxLevel;
}

void log(LogLevel level, std::string_view message) {
    std::shared_ptr<const LogHandler> handler;
    {
        State& s = state();
        std::lock_guard lock(s.mutex);
        if (level > s.maxLevel) {
            return;
        }
        handler = s.handler;
    }
    std::string text = redact(message);
    if (handler) {
        (*handler)(level, "icepunch", text);
    } else {
        std::fprintf(stderr, "icepunch %s: %s\n", std::string(toString(level)).c_str(),
                     text.c_str());
    }
}

SecretHandle holdSecret(std::string_view secret) {
    if (secret.size() < kMinSecretLength) {
        return nullptr;
    }
    State& s = state();
    std::lock_guard lock(s.mutex);
    auto it = s.secrets.try_emplace(std::string(secret), 0).first;
    ++it->second;
    return &*it; // a map's nodes stay put until erased
}

void releaseSecret(SecretHandle handle) {
    if (!handle) {
        return;
    }
    State& s = state();
    std::lock_guard lock(s.mutex);
    const auto* entry = static_cast<const std::pair<const std::string, int>*>(handle);
    auto it = s.secrets.find(entry->first);
    if (it != s.secrets.end() && --it->second == 0) {
        s.secrets.erase(it);
    }
}

std::string redact(std::string_view text) {
    std::string out(text);
    State& s = state();
    std::lock_guard lock(s.mutex);
    for (const auto& [secret, count] : s.secrets) {
        for (auto pos = out.find(secret); pos != std::string::npos;
             pos = out.find(secret, pos + 4)) {
            out.replace(pos, secret.size(), "****");
        }
    }
    return out;
}

} // namespace impl

void setLogHandler(LogHandler handler, LogLevel maxLevel) {
    impl::installLibniceLogHandlers();
    auto& s = impl::state();
    bool debug = handler && maxLevel == LogLevel::Debug;
    {
        std::lock_guard lock(s.mutex);
        s.handler = handler ? std::make_shared<const LogHandler>(std::move(handler)) : nullptr;
        s.maxLevel = s.handler ? maxLevel : LogLevel::Warning;
        if (s.handler && !s.glibHandlers) {
            impl::installFor({"GLib", "GLib-GObject", "GLib-GIO"});
            s.glibHandlers = true;
        }
    }
    if (debug) {
        nice_debug_enable(TRUE);
    }
}

} // namespace icepunch
