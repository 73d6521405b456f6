#pragma once

#include <string>
#include <utility>
#include <variant>

namespace icepunch {

// What kind of failure an Error is, for code that reacts to it; the message says it in words.
enum class ErrorCode {
    Failed,          // anything not listed below
    InvalidArgument, // a bad parameter or configuration
    Malformed,       // input that does not parse
    LimitExceeded,   // input over a documented limit
    NoSuchStream,    // unknown stream or component
    InvalidState,    // not possible now (gathering twice, ...)
    NotConnected,    // send: no selected pair yet
    ConsentLost,     // send: the path was lost after it worked (consent expired, failure)
    TooLarge,        // send: over kMaxDatagramSize
    Empty,           // send: an empty datagram
    LoopStopped,     // the event loop has stopped
    NotSecure,       // send: security is on and the DTLS session is not up (or failed)
};

// An error as a value: what went wrong, in one plain sentence a user can act on.
struct Error {
    std::string message;
    ErrorCode code = ErrorCode::Failed;
};

// Either a value or an Error. Never throws; check ok() before value().
template <typename T> class Result {
public:
    Result(T value) : v_(std::move(value)) {}
    Result(Error error) : v_(std::move(error)) {}

    bool ok() const { return v_.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { return std::get<1>(v_); }

private:
    std::variant<T, Error> v_;
};

// Result of an operation that yields nothing but may fail.
class Status {
public:
    Status() = default;
    Status(Error error) : error_(std::move(error)), ok_(false) {}

    bool ok() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const Error& error() const { return error_; }

private:
    Error error_;
    bool ok_ = true;
};

} // namespace icepunch
