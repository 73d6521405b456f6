#include <icepunch/config.hpp>

#include <ostream>

namespace icepunch {

std::ostream& operator<<(std::ostream& os, Role role) {
    return os << (role == Role::Controlling ? "controlling" : "controlled");
}

TurnCredentials TurnServer::credentials() const {
    if (sharedSecret.empty()) {
        return {username, password};
    }
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto expiry = std::chrono::duration_cast<std::chrono::seconds>(now + restLifetime).count();
    return makeRestCredentials(sharedSecret, restUser, expiry);
}

} // namespace icepunch
