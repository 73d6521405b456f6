#pragma once

// The library is built with hidden symbol visibility: only declarations marked ICEPUNCH_EXPORT
// are part of libicepunch.so's ABI; everything else (lib/impl, Agent::Impl) stays internal.
#if defined(__GNUC__) || defined(__clang__)
#define ICEPUNCH_EXPORT __attribute__((visibility("default")))
#define ICEPUNCH_NO_EXPORT __attribute__((visibility("hidden")))
#else
#define ICEPUNCH_EXPORT
#define ICEPUNCH_NO_EXPORT
#endif
