#include "impl/net_util.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

namespace icepunch::impl {

namespace {

bool isFamilyAllowed(int family, bool ipv4, bool ipv6) {
    return (family == AF_INET && ipv4) || (family == AF_INET6 && ipv6);
}

std::string toString(const sockaddr* sa) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    } else {
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
    }
    return buf;
}

} // namespace

bool isIpLiteral(const std::string& text) {
    in6_addr buffer{};
    return inet_pton(AF_INET, text.c_str(), &buffer) == 1 ||
           inet_pton(AF_INET6, text.c_str(), &buffer) == 1;
}

Result<std::string> resolveHost(const std::string& host, bool ipv4, bool ipv6) {
    addrinfo hints{};
    hints.ai_family = ipv4 && ipv6 ? AF_UNSPEC : (ipv4 ? AF_INET : AF_INET6);
    hints.ai_socktype = SOCK_DGRAM;
    addrinfo* result = nullptr;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
    if (rc != 0 || !result) {
        return Error{"cannot resolve \"" + host + "\": " + gai_strerror(rc)};
    }
    std::string address = toString(result->ai_addr);
    freeaddrinfo(result);
    return address;
}

Result<std::vector<std::string>> selectLocalAddresses(const std::vector<std::string>& wanted,
                                                      bool ipv4, bool ipv6) {
    if (!ipv4 && !ipv6) {
        return Error{"both IPv4 and IPv6 are switched off"};
    }
    std::vector<std::string> addresses;
    if (wanted.empty() && ipv4 && ipv6) {
        return addresses;
    }
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
        return Error{"cannot list local interfaces"};
    }
    for (ifaddrs* ifa = list; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_addr || !(ifa->ifa_flags & IFF_UP)) {
            continue;
        }
        int family = ifa->ifa_addr->sa_family;
        if (!isFamilyAllowed(family, ipv4, ipv6)) {
            continue;
        }
        std::string address = toString(ifa->ifa_addr);
        bool linkLocal =
            family == AF_INET6 &&
            IN6_IS_ADDR_LINKLOCAL(&reinterpret_cast<const sockaddr_in6*>(ifa->ifa_addr)->sin6_addr);
        if (wanted.empty()) {
            if ((ifa->ifa_flags & IFF_LOOPBACK) || linkLocal) {
                continue;
            }
        } else if (std::find(wanted.begin(), wanted.end(), address) == wanted.end() &&
                   std::find(wanted.begin(), wanted.end(), ifa->ifa_name) == wanted.end()) {
            continue;
        }
        if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
            addresses.push_back(address);
        }
    }
    freeifaddrs(list);
    if (addresses.empty() && !wanted.empty()) {
        std::string names;
        for (const auto& w : wanted) {
            names += (names.empty() ? "" : ", ") + w;
        }
        return Error{"no usable local address matches the interface list (" + names + ")"};
    }
    return addresses;
}

} // namespace icepunch::impl
