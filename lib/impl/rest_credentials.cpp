// TURN REST credentials: the only part of the config that needs OpenSSL, kept in lib/impl.
#include <icepunch/config.hpp>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string>

namespace icepunch {

TurnCredentials makeRestCredentials(std::string_view secret, std::string_view user,
                                    int64_t expiryUnixTime) {
    TurnCredentials creds;
    creds.username = std::to_string(expiryUnixTime);
    if (!user.empty()) {
        creds.username += ':';
        creds.username += user;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int macLen = 0;
    HMAC(EVP_sha1(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(creds.username.data()), creds.username.size(), mac,
         &macLen);
    std::string b64(4 * ((macLen + 2) / 3) + 1, '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()), mac,
                            static_cast<int>(macLen));
    b64.resize(n);
    creds.password = std::move(b64);
    return creds;
}

} // namespace icepunch
