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

// Secrets to redact while they are held (an agent's lifetime). A holder keeps only the handle,
// not a copy: thousands of agents hold two or more each. Null for an empty or very short string
// (not registered); holding the same secret again returns the same handle.
using SecretHandle = const void*;
SecretHandle holdSecret(std::string_view secret);
void releaseSecret(SecretHandle handle); // once per holdSecret that returned it
// The text with every registered secret replaced by "****".
std::string redact(std::string_view text);

} // namespace icepunch::impl
