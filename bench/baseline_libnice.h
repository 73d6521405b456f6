/* Raw-libnice baseline for the icepunch benchmarks: two peers in one process, plus a
 * datapath measurement shared by every contender (icepunch, raw libnice, raw UDP).
 * Plain C API (no GLib types), usable from C++.
 */
#ifndef ICEPUNCH_BENCH_BASELINE_LIBNICE_H
#define ICEPUNCH_BENCH_BASELINE_LIBNICE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A GMainContext thread that many pairs can share (bl_config.loop), as an app with many agents
 * on one loop does. */
typedef struct bl_loop bl_loop;
bl_loop* bl_loop_new(void);
void bl_loop_free(bl_loop* loop); /* after every pair on it is freed */

typedef struct bl_config {
    /* Network namespace (name under /run/netns) per peer, or NULL. With a namespace, or with
     * separate_threads, each peer gets its own GMainContext thread; else both share one. */
    const char* ns[2];
    int separate_threads;
    /* Added with nice_agent_add_local_address() (libnice never gathers on loopback itself);
     * NULL: libnice's default interface discovery. */
    const char* local_address;
    const char* stun_ip; /* IP literal or NULL */
    unsigned stun_port;
    const char* turn_ip; /* IP literal or NULL */
    unsigned turn_port;
    int turn_tcp;
    const char* turn_user;
    const char* turn_pass;
    int relay_only; /* "force-relay" (only for the relay benchmark, not a default) */
    int no_upnp;    /* only where UPnP's SSDP multicast would leave loopback */
    /* libnice with icepunch's settings, a few g_object_set calls away for any user: UPnP off,
     * ICE-TCP off, 10 ms check pacing, 100 ms STUN RTO, 5 retransmissions, trickle, aggressive
     * nomination, consent freshness. 0: libnice's defaults. */
    int tuned;
    double timeout_s;
    double ready_wait_s; /* after CONNECTED, how long to wait for READY */
    /* Both peers on this shared loop (not owned by the pair); NULL: see ns and
     * separate_threads. */
    bl_loop* loop;
} bl_config;

typedef struct bl_pair bl_pair;

typedef struct bl_connect_times {
    double connected_ms; /* start to both peers CONNECTED */
    double ready_ms;     /* start to both peers READY, < 0 if not within ready_wait_s */
    int relayed;         /* selected pair of peer 0 uses a relay candidate */
    char pair[160];      /* peer 0's selected pair, "local -> remote" */
} bl_connect_times;

/* Creates both agents (peer 0 controlling), exchanges credentials, gathers and trickles
 * candidates between them, waits for CONNECTED. NULL on failure (reason in err). */
bl_pair* bl_pair_connect(const bl_config* config, bl_connect_times* times, char* err,
                         size_t errlen);
/* Sends one datagram from peer `side` on its selected pair; 0 on success. Any thread. */
int bl_pair_send(bl_pair* pair, int side, const void* data, size_t len);
/* Datagrams received by peer `side` so far. */
uint64_t bl_pair_received(bl_pair* pair, int side);
/* 1 while neither peer's component has FAILED (consent lost, for one). */
int bl_pair_ok(bl_pair* pair);
/* Peer `side` sends back every datagram it receives. */
void bl_pair_set_echo(bl_pair* pair, int side, int on);
/* Optional hook called (on the peer's loop thread) for every datagram peer `side` receives. */
void bl_pair_set_on_receive(bl_pair* pair, int side,
                            void (*fn)(void* user, const void* data, size_t len), void* user);
void bl_pair_free(bl_pair* pair);

/* ---- datapath measurement, the same code for every contender ---- */
typedef struct bl_endpoint_ops {
    /* Sends one datagram from `side` to the other side; 0 on success. */
    int (*send)(void* ctx, int side, const void* data, size_t len);
    /* Datagrams received by `side` so far. */
    uint64_t (*received)(void* ctx, int side);
    void* ctx;
} bl_endpoint_ops;

typedef struct bl_dp_result {
    uint64_t sent;     /* datagrams sent (both directions together) */
    uint64_t received; /* datagrams received */
    uint64_t send_errors;
    double seconds;      /* sending period */
    double cpu_s;        /* process CPU (user+sys) over sending and draining */
    double dgrams_per_s; /* received / seconds */
    double mbytes_per_s; /* received payload bytes / seconds / 1e6 */
    double cpu_s_per_mdgram;
    double loss; /* (sent - received) / sent */
} bl_dp_result;

/* One sender thread per direction (side 0 -> 1, and 1 -> 0 when both), each keeping at most
 * `window` datagrams in flight (sent minus received by the peer; a window that makes no progress
 * for 50 ms is written off as lost). Runs `seconds`, then drains up to 300 ms. */
int bl_datapath(const bl_endpoint_ops* ops, size_t size, double seconds, int both, unsigned window,
                bl_dp_result* result);

double bl_now_ms(void);

#ifdef __cplusplus
}
#endif

#endif
