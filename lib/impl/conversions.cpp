#include "impl/conversions.hpp"

#include <cstring>

namespace icepunch::impl {

std::string addressToString(const NiceAddress& address) {
    char buf[NICE_ADDRESS_STRING_LEN];
    nice_address_to_string(&address, buf);
    return buf;
}

Candidate fromNice(const NiceCandidate& nc) {
    Candidate c;
    c.foundation = nc.foundation;
    c.component = nc.component_id;
    c.priority = nc.priority;
    c.address = addressToString(nc.addr);
    c.port = static_cast<uint16_t>(nice_address_get_port(&nc.addr));
    switch (nc.type) {
    case NICE_CANDIDATE_TYPE_HOST:
        c.type = CandidateType::Host;
        break;
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
        c.type = CandidateType::ServerReflexive;
        break;
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
        c.type = CandidateType::PeerReflexive;
        break;
    case NICE_CANDIDATE_TYPE_RELAYED:
        c.type = CandidateType::Relayed;
        break;
    }
    switch (nc.transport) {
    case NICE_CANDIDATE_TRANSPORT_UDP:
        c.transport = Transport::Udp;
        break;
    case NICE_CANDIDATE_TRANSPORT_TCP_ACTIVE:
        c.transport = Transport::Tcp;
        c.tcpType = TcpType::Active;
        break;
    case NICE_CANDIDATE_TRANSPORT_TCP_PASSIVE:
        c.transport = Transport::Tcp;
        c.tcpType = TcpType::Passive;
        break;
    case NICE_CANDIDATE_TRANSPORT_TCP_SO:
        c.transport = Transport::Tcp;
        c.tcpType = TcpType::SimultaneousOpen;
        break;
    }
    if (c.tcpType == TcpType::Active && c.port == 0) {
        c.port = 9; // RFC 6544 4.5: active candidates carry the discard port
    }
    if (c.type != CandidateType::Host && nice_address_is_valid(&nc.base_addr)) {
        c.relatedAddress = addressToString(nc.base_addr);
        c.relatedPort = static_cast<uint16_t>(nice_address_get_port(&nc.base_addr));
    }
    return c;
}

Result<NiceCandidate*> toNice(const Candidate& c, unsigned streamId) {
    static constexpr NiceCandidateType kTypes[] = {
        NICE_CANDIDATE_TYPE_HOST, NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE,
        NICE_CANDIDATE_TYPE_PEER_REFLEXIVE, NICE_CANDIDATE_TYPE_RELAYED};
    NiceCandidate* nc = nice_candidate_new(kTypes[static_cast<int>(c.type)]);
    if (c.transport == Transport::Udp) {
        nc->transport = NICE_CANDIDATE_TRANSPORT_UDP;
    } else if (c.tcpType == TcpType::Active) {
        nc->transport = NICE_CANDIDATE_TRANSPORT_TCP_ACTIVE;
    } else if (c.tcpType == TcpType::Passive) {
        nc->transport = NICE_CANDIDATE_TRANSPORT_TCP_PASSIVE;
    } else {
        nc->transport = NICE_CANDIDATE_TRANSPORT_TCP_SO;
    }
    if (!nice_address_set_from_string(&nc->addr, c.address.c_str())) {
        nice_candidate_free(nc);
        return Error{"candidate address \"" + c.address +
                     "\" is not an IP address (hostname candidates are not resolved)"};
    }
    nice_address_set_port(&nc->addr, c.port);
    if (c.relatedAddress &&
        nice_address_set_from_string(&nc->base_addr, c.relatedAddress->c_str())) {
        nice_address_set_port(&nc->base_addr, c.relatedPort.value_or(0));
    }
    nc->priority = c.priority;
    nc->stream_id = streamId;
    nc->component_id = c.component;
    g_strlcpy(nc->foundation, c.foundation.c_str(), NICE_CANDIDATE_MAX_FOUNDATION);
    return nc;
}

ComponentState fromNice(NiceComponentState state) {
    switch (state) {
    case NICE_COMPONENT_STATE_DISCONNECTED:
        return ComponentState::Disconnected;
    case NICE_COMPONENT_STATE_GATHERING:
        return ComponentState::Gathering;
    case NICE_COMPONENT_STATE_CONNECTING:
        return ComponentState::Checking;
    case NICE_COMPONENT_STATE_CONNECTED:
        return ComponentState::Connected;
    case NICE_COMPONENT_STATE_READY:
        return ComponentState::Completed;
    case NICE_COMPONENT_STATE_FAILED:
        return ComponentState::Failed;
    default:
        return ComponentState::Disconnected;
    }
}

} // namespace icepunch::impl
