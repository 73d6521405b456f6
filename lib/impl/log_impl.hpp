#pragma once

// The logging hook's inside: icepunch's own lines, libnice's and GLib's through g_log handlers,
// and the registry of secrets that are redacted from every line.

#include <icepunch/log.hpp>

#include <string>
#include <vector>

namespace icepunch::impl {

// Sends one icepunch line to the handler (or stderr for warnings and errors by default).
void log(LogLevel level, std::string_view message);
bool logEnabled(LogLevel level);

// Installs the g_log handlers for libnice's domains once, so that their lines are redacted even
// when the app set no handler. Called when the first agent is made.
void installLibniceLogHandlers();

// Secrets to redact while they are registered (an agent's lifetime). Empty and very short
// strings are ignored.
void addSecrets(const std::vector<std::string>& secrets);
void removeSecrets(const std::vector<std::string>& secrets);
// The text with every registered secret replaced by "****".
std::string redact(std::string_view text);

} // namespace icepunch::impl
