#pragma once

#include <icepunch/export.hpp>

#include <functional>
#include <iosfwd>
#include <string_view>

namespace icepunch {

enum class LogLevel { Error, Warning, Info, Debug };
ICEPUNCH_EXPORT std::string_view toString(LogLevel level);
ICEPUNCH_EXPORT std::ostream& operator<<(std::ostream& os, LogLevel level);

// One log line: its level, where it comes from ("icepunch", "libnice", "libnice-stun",
// "libnice-socket", "GLib", "GLib-GObject", "GLib-GIO") and the text. Secrets that pass through
// icepunch (TURN passwords, REST shared secrets and the passwords derived from them, ice-pwd) are
// replaced by "****" before any handler sees a line.
using LogHandler =
    std::function<void(LogLevel level, std::string_view category, std::string_view message)>;

// Process-wide. Lines up to `maxLevel` go to `handler`, which may be called from any thread (keep
// it short and do not call back into icepunch from it). With maxLevel Debug libnice's own debug
// output is switched on as well. An empty handler restores the default: icepunch's warnings and
// errors, and libnice's and GLib's lines as GLib prints them (NICE_DEBUG, G_MESSAGES_DEBUG), all
// with secrets redacted.
ICEPUNCH_EXPORT void setLogHandler(LogHandler handler, LogLevel maxLevel = LogLevel::Info);

} // namespace icepunch
