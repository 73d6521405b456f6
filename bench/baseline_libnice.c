/* Raw-libnice baseline for the icepunch benchmarks.
 *
 * libnice as an application would use it: nice_agent_new(ctx, NICE_COMPATIBILITY_RFC5245) and
 * every property at its default (ICE-UDP and ICE-TCP, aggressive nomination, no trickle option,
 * UPnP at its default). Deviations, only when asked: nice_agent_add_local_address() for a given
 * address (libnice never gathers on loopback), the same STUN/TURN servers as icepunch, and
 * "force-relay" for the relay-only benchmark. Candidates are trickled to the peer as libnice
 * reports them (new-candidate-full), after the credentials were exchanged: the same way the
 * icepunch benchmark starts its agents.
 *
 * Both peers live in this process: on one shared GMainContext thread, or each on its own thread
 * (which first enters the peer's network namespace with setns(), for the NAT lab).
 *
 * Built twice: as the library the C++ driver links (interleaved runs in one process), and with
 * BL_MAIN as the standalone program `baseline_libnice` (see usage()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "baseline_libnice.h"

#include <agent.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double bl_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ loop threads */

typedef struct bl_loop {
    GMainContext* context;
    GMainLoop* loop;
    GThread* thread;
    char* ns;
    int ns_error;
    GMutex mutex;
    GCond cond;
    int started;
} bl_loop;
typedef bl_loop loop_thread;

static gpointer loop_main(gpointer data) {
    loop_thread* t = data;
    if (t->ns) {
        char path[256];
        snprintf(path, sizeof path, "/run/netns/%s", t->ns);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
            t->ns_error = errno ? errno : EINVAL;
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    g_main_context_push_thread_default(t->context);
    g_mutex_lock(&t->mutex);
    t->started = 1;
    g_cond_signal(&t->cond);
    g_mutex_unlock(&t->mutex);
    g_main_loop_run(t->loop);
    g_main_context_pop_thread_default(t->context);
    return NULL;
}

static loop_thread* loop_thread_new(const char* ns) {
    loop_thread* t = g_new0(loop_thread, 1);
    t->context = g_main_context_new();
    t->loop = g_main_loop_new(t->context, FALSE);
    t->ns = ns ? g_strdup(ns) : NULL;
    g_mutex_init(&t->mutex);
    g_cond_init(&t->cond);
    t->thread = g_thread_new("bl-loop", loop_main, t);
    g_mutex_lock(&t->mutex);
    while (!t->started) {
        g_cond_wait(&t->cond, &t->mutex);
    }
    g_mutex_unlock(&t->mutex);
    return t;
}

static gboolean quit_cb(gpointer data) {
    g_main_loop_quit(data);
    return G_SOURCE_REMOVE;
}

static void loop_thread_free(loop_thread* t) {
    GSource* s = g_idle_source_new();
    g_source_set_callback(s, quit_cb, t->loop, NULL);
    g_source_attach(s, t->context);
    g_source_unref(s);
    g_thread_join(t->thread);
    g_main_loop_unref(t->loop);
    g_main_context_unref(t->context);
    g_mutex_clear(&t->mutex);
    g_cond_clear(&t->cond);
    g_free(t->ns);
    g_free(t);
}

bl_loop* bl_loop_new(void) {
    return loop_thread_new(NULL);
}

void bl_loop_free(bl_loop* loop) {
    loop_thread_free(loop);
}

/* Runs fn(data) on the thread of `t` and waits for it. */
typedef struct call {
    void (*fn)(void*);
    void* data;
    GMutex mutex;
    GCond cond;
    int done;
} call;

static gboolean call_cb(gpointer p) {
    call* c = p;
    c->fn(c->data);
    g_mutex_lock(&c->mutex);
    c->done = 1;
    g_cond_signal(&c->cond);
    g_mutex_unlock(&c->mutex);
    return G_SOURCE_REMOVE;
}

static void run_on(loop_thread* t, void (*fn)(void*), void* data) {
    call c = {fn, data, {0}, {0}, 0};
    g_mutex_init(&c.mutex);
    g_cond_init(&c.cond);
    GSource* s = g_idle_source_new();
    g_source_set_callback(s, call_cb, &c, NULL);
    g_source_attach(s, t->context);
    g_source_unref(s);
    g_mutex_lock(&c.mutex);
    while (!c.done) {
        g_cond_wait(&c.cond, &c.mutex);
    }
    g_mutex_unlock(&c.mutex);
    g_mutex_clear(&c.mutex);
    g_cond_clear(&c.cond);
}

/* ------------------------------------------------------------------ peers */

typedef struct peer {
    struct bl_pair* pair;
    int side;
    loop_thread* thread;
    NiceAgent* agent;
    guint stream;
    double connected_at, ready_at; /* ms, 0 = not yet */
    int failed;
    uint64_t received; /* atomic */
    int echo;
    void (*on_receive)(void*, const void*, size_t);
    void* on_receive_user;
    char pair_text[160];
    int relayed;
} peer;

struct bl_pair {
    bl_config config;
    loop_thread* threads[2]; /* threads[1] may equal threads[0] */
    peer peers[2];
    int closing; /* agents whose asynchronous close has not finished */
    GMutex mutex;
    GCond cond;
};

static void recv_cb(NiceAgent* agent, guint stream, guint component, guint len, gchar* buf,
                    gpointer data) {
    peer* p = data;
    (void)component;
    __atomic_add_fetch(&p->received, 1, __ATOMIC_RELAXED);
    if (p->on_receive) {
        p->on_receive(p->on_receive_user, buf, len);
    }
    if (p->echo) {
        nice_agent_send(agent, stream, 1, len, buf);
    }
}

static void state_cb(NiceAgent* agent, guint stream, guint component, guint state, gpointer data) {
    peer* p = data;
    (void)agent;
    (void)stream;
    if (component != 1) {
        return;
    }
    g_mutex_lock(&p->pair->mutex);
    double now = bl_now_ms();
    if ((state == NICE_COMPONENT_STATE_CONNECTED || state == NICE_COMPONENT_STATE_READY) &&
        p->connected_at == 0) {
        p->connected_at = now;
    }
    if (state == NICE_COMPONENT_STATE_READY && p->ready_at == 0) {
        p->ready_at = now;
    }
    if (state == NICE_COMPONENT_STATE_FAILED) {
        p->failed = 1;
    }
    g_cond_broadcast(&p->pair->cond);
    g_mutex_unlock(&p->pair->mutex);
}

static void selected_cb(NiceAgent* agent, guint stream, guint component, NiceCandidate* local,
                        NiceCandidate* remote, gpointer data) {
    peer* p = data;
    (void)agent;
    (void)stream;
    if (component != 1) {
        return;
    }
    char la[NICE_ADDRESS_STRING_LEN], ra[NICE_ADDRESS_STRING_LEN];
    nice_address_to_string(&local->addr, la);
    nice_address_to_string(&remote->addr, ra);
    static const char* types[] = {"host", "srflx", "prflx", "relay"};
    g_mutex_lock(&p->pair->mutex);
    snprintf(p->pair_text, sizeof p->pair_text, "%s %s:%u -> %s %s:%u", types[local->type % 4], la,
             nice_address_get_port(&local->addr), types[remote->type % 4], ra,
             nice_address_get_port(&remote->addr));
    p->relayed =
        local->type == NICE_CANDIDATE_TYPE_RELAYED || remote->type == NICE_CANDIDATE_TYPE_RELAYED;
    g_mutex_unlock(&p->pair->mutex);
}

typedef struct remote_candidate {
    peer* to;
    NiceCandidate* candidate;
} remote_candidate;

static gboolean add_remote_cb(gpointer data) {
    remote_candidate* rc = data;
    if (!rc->to->agent) {
        return G_SOURCE_REMOVE;
    }
    GSList list = {rc->candidate, NULL};
    nice_agent_set_remote_candidates(rc->to->agent, rc->to->stream, rc->candidate->component_id,
                                     &list);
    return G_SOURCE_REMOVE;
}

static void free_remote(gpointer data) {
    remote_candidate* rc = data;
    nice_candidate_free(rc->candidate);
    g_free(rc);
}

/* Trickle: every local candidate goes to the peer, on the peer's thread. */
static void candidate_cb(NiceAgent* agent, NiceCandidate* candidate, gpointer data) {
    peer* p = data;
    (void)agent;
    peer* other = &p->pair->peers[1 - p->side];
    remote_candidate* rc = g_new0(remote_candidate, 1);
    rc->to = other;
    rc->candidate = nice_candidate_copy(candidate);
    rc->candidate->stream_id = other->stream;
    g_main_context_invoke_full(other->thread->context, G_PRIORITY_DEFAULT, add_remote_cb, rc,
                               free_remote);
}

static void create_agent(void* data) {
    peer* p = data;
    const bl_config* c = &p->pair->config;
    /* Diagnostics only (not used by bench/run): BL_TRICKLE=1, BL_ICE_TCP=0. */
    const char* trickle = getenv("BL_TRICKLE");
    const char* ice_tcp = getenv("BL_ICE_TCP");
    if (c->tuned) {
        p->agent = nice_agent_new_full(p->thread->context, NICE_COMPATIBILITY_RFC5245,
                                       NICE_AGENT_OPTION_ICE_TRICKLE |
                                           NICE_AGENT_OPTION_CONSENT_FRESHNESS);
        g_object_set(p->agent, "upnp", FALSE, "ice-tcp", FALSE, "stun-pacing-timer", 5u,
                     "stun-initial-timeout", 100u, "stun-max-retransmissions", 5u, NULL);
    } else if (trickle && *trickle == '1') {
        p->agent = nice_agent_new_full(p->thread->context, NICE_COMPATIBILITY_RFC5245,
                                       NICE_AGENT_OPTION_ICE_TRICKLE);
    } else {
        p->agent = nice_agent_new(p->thread->context, NICE_COMPATIBILITY_RFC5245);
    }
    g_object_set(p->agent, "controlling-mode", p->side == 0, NULL);
    if (ice_tcp && *ice_tcp == '0') {
        g_object_set(p->agent, "ice-tcp", FALSE, NULL);
    }
    if (c->no_upnp) {
        g_object_set(p->agent, "upnp", FALSE, NULL);
    }
    if (c->relay_only) {
        g_object_set(p->agent, "force-relay", TRUE, NULL);
    }
    if (c->stun_ip) {
        g_object_set(p->agent, "stun-server", c->stun_ip, "stun-server-port", c->stun_port, NULL);
    }
    if (c->local_address) {
        NiceAddress a;
        if (nice_address_set_from_string(&a, c->local_address)) {
            nice_agent_add_local_address(p->agent, &a);
        }
    }
    p->stream = nice_agent_add_stream(p->agent, 1);
    if (c->turn_ip) {
        nice_agent_set_relay_info(
            p->agent, p->stream, 1, c->turn_ip, c->turn_port, c->turn_user, c->turn_pass,
            c->turn_tcp ? NICE_RELAY_TYPE_TURN_TCP : NICE_RELAY_TYPE_TURN_UDP);
    }
    g_signal_connect(p->agent, "component-state-changed", G_CALLBACK(state_cb), p);
    g_signal_connect(p->agent, "new-candidate-full", G_CALLBACK(candidate_cb), p);
    g_signal_connect(p->agent, "new-selected-pair-full", G_CALLBACK(selected_cb), p);
    nice_agent_attach_recv(p->agent, p->stream, 1, p->thread->context, recv_cb, p);
}

static void set_remote_credentials(void* data) {
    peer* p = data;
    peer* other = &p->pair->peers[1 - p->side];
    gchar *ufrag = NULL, *pwd = NULL;
    nice_agent_get_local_credentials(other->agent, other->stream, &ufrag, &pwd);
    nice_agent_set_remote_credentials(p->agent, p->stream, ufrag, pwd);
    g_free(ufrag);
    g_free(pwd);
}

static void gather(void* data) {
    peer* p = data;
    if (!nice_agent_gather_candidates(p->agent, p->stream)) {
        p->failed = 1;
    }
}

static void closed_cb(GObject* source, GAsyncResult* result, gpointer data) {
    bl_pair* pair = data;
    (void)result;
    g_object_unref(source);
    g_mutex_lock(&pair->mutex);
    pair->closing--;
    g_cond_broadcast(&pair->cond);
    g_mutex_unlock(&pair->mutex);
}

/* As libnice asks: close asynchronously (TURN deallocations), then drop the agent. */
static void destroy_agent(void* data) {
    peer* p = data;
    if (p->agent) {
        nice_agent_attach_recv(p->agent, p->stream, 1, p->thread->context, NULL, NULL);
        g_signal_handlers_disconnect_by_data(p->agent, p);
        g_mutex_lock(&p->pair->mutex);
        p->pair->closing++;
        g_mutex_unlock(&p->pair->mutex);
        nice_agent_close_async(p->agent, closed_cb, p->pair);
        p->agent = NULL;
    }
}

static int both(bl_pair* pair, int ready) {
    for (int i = 0; i < 2; ++i) {
        if ((ready ? pair->peers[i].ready_at : pair->peers[i].connected_at) == 0) {
            return 0;
        }
    }
    return 1;
}

static double max2(double a, double b) {
    return a > b ? a : b;
}

bl_pair* bl_pair_connect(const bl_config* config, bl_connect_times* times, char* err,
                         size_t errlen) {
    bl_pair* pair = g_new0(bl_pair, 1);
    pair->config = *config;
    g_mutex_init(&pair->mutex);
    g_cond_init(&pair->cond);
    double start = bl_now_ms();
    int separate = config->separate_threads || config->ns[0] || config->ns[1];
    pair->threads[0] = config->loop ? config->loop : loop_thread_new(config->ns[0]);
    pair->threads[1] = config->loop ? config->loop
                       : separate   ? loop_thread_new(config->ns[1])
                                    : pair->threads[0];
    for (int i = 0; i < 2; ++i) {
        if (pair->threads[i]->ns_error) {
            snprintf(err, errlen, "setns %s: %s", config->ns[i],
                     strerror(pair->threads[i]->ns_error));
            bl_pair_free(pair);
            return NULL;
        }
        pair->peers[i].pair = pair;
        pair->peers[i].side = i;
        pair->peers[i].thread = pair->threads[i];
    }
    for (int i = 0; i < 2; ++i) {
        run_on(pair->threads[i], create_agent, &pair->peers[i]);
    }
    for (int i = 0; i < 2; ++i) {
        run_on(pair->threads[i], set_remote_credentials, &pair->peers[i]);
    }
    for (int i = 0; i < 2; ++i) {
        run_on(pair->threads[i], gather, &pair->peers[i]);
    }
    gint64 deadline = g_get_monotonic_time() + (gint64)(config->timeout_s * 1e6);
    int ok = 1;
    g_mutex_lock(&pair->mutex);
    while (!both(pair, 0)) {
        if (pair->peers[0].failed || pair->peers[1].failed) {
            snprintf(err, errlen, "ICE failed (peer %d)", pair->peers[0].failed ? 0 : 1);
            ok = 0;
            break;
        }
        if (!g_cond_wait_until(&pair->cond, &pair->mutex, deadline)) {
            snprintf(err, errlen, "not connected within %.1f s", config->timeout_s);
            ok = 0;
            break;
        }
    }
    if (ok && times) {
        times->connected_ms =
            max2(pair->peers[0].connected_at, pair->peers[1].connected_at) - start;
        gint64 ready_deadline = g_get_monotonic_time() + (gint64)(config->ready_wait_s * 1e6);
        while (!both(pair, 1) && g_cond_wait_until(&pair->cond, &pair->mutex, ready_deadline)) {
        }
        times->ready_ms =
            both(pair, 1) ? max2(pair->peers[0].ready_at, pair->peers[1].ready_at) - start : -1;
        times->relayed = pair->peers[0].relayed;
        snprintf(times->pair, sizeof times->pair, "%s", pair->peers[0].pair_text);
    }
    g_mutex_unlock(&pair->mutex);
    if (!ok) {
        bl_pair_free(pair);
        return NULL;
    }
    return pair;
}

int bl_pair_send(bl_pair* pair, int side, const void* data, size_t len) {
    peer* p = &pair->peers[side];
    return nice_agent_send(p->agent, p->stream, 1, (guint)len, data) == (gint)len ? 0 : -1;
}

uint64_t bl_pair_received(bl_pair* pair, int side) {
    return __atomic_load_n(&pair->peers[side].received, __ATOMIC_RELAXED);
}

int bl_pair_ok(bl_pair* pair) {
    g_mutex_lock(&pair->mutex);
    int ok = !pair->peers[0].failed && !pair->peers[1].failed;
    g_mutex_unlock(&pair->mutex);
    return ok;
}

void bl_pair_set_echo(bl_pair* pair, int side, int on) {
    pair->peers[side].echo = on;
}

void bl_pair_set_on_receive(bl_pair* pair, int side,
                            void (*fn)(void* user, const void* data, size_t len), void* user) {
    pair->peers[side].on_receive_user = user;
    pair->peers[side].on_receive = fn;
}

void bl_pair_free(bl_pair* pair) {
    if (!pair) {
        return;
    }
    for (int i = 0; i < 2; ++i) {
        if (pair->peers[i].thread) {
            run_on(pair->peers[i].thread, destroy_agent, &pair->peers[i]);
        }
    }
    gint64 deadline = g_get_monotonic_time() + G_TIME_SPAN_SECOND / 2;
    g_mutex_lock(&pair->mutex);
    while (pair->closing > 0 && g_cond_wait_until(&pair->cond, &pair->mutex, deadline)) {
    }
    g_mutex_unlock(&pair->mutex);
    if (pair->threads[1] && pair->threads[1] != pair->threads[0] && !pair->config.loop) {
        loop_thread_free(pair->threads[1]);
    }
    if (pair->threads[0] && !pair->config.loop) {
        loop_thread_free(pair->threads[0]);
    }
    g_mutex_clear(&pair->mutex);
    g_cond_clear(&pair->cond);
    g_free(pair);
}

/* ------------------------------------------------------------------ datapath */

typedef struct direction {
    const bl_endpoint_ops* ops;
    int from;
    size_t size;
    unsigned window;
    double end_ms;
    uint64_t sent, errors, base;
} direction;

static void sleep_us(long us) {
    struct timespec ts = {0, us * 1000};
    nanosleep(&ts, NULL);
}

static void* sender(void* data) {
    direction* d = data;
    int to = 1 - d->from;
    unsigned char* buf = calloc(1, d->size);
    memset(buf, 'x', d->size);
    uint64_t forgiven = 0, last_received = 0;
    double last_progress = bl_now_ms();
    while (1) {
        uint64_t received = d->ops->received(d->ops->ctx, to) - d->base;
        double now;
        if (d->sent - received - forgiven < d->window) {
            uint64_t seq = d->sent;
            memcpy(buf, &seq, d->size < sizeof seq ? d->size : sizeof seq);
            if (d->ops->send(d->ops->ctx, d->from, buf, d->size) != 0) {
                d->errors++;
            }
            d->sent++;
            if ((d->sent & 63) != 0) {
                continue;
            }
            if (bl_now_ms() >= d->end_ms) {
                break;
            }
            continue;
        }
        now = bl_now_ms();
        if (now >= d->end_ms) {
            break;
        }
        if (received != last_received) {
            last_received = received;
            last_progress = now;
        } else if (now - last_progress > 50) {
            forgiven = d->sent - received; /* written off as lost */
            last_progress = now;
        }
        sleep_us(20);
    }
    free(buf);
    return NULL;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int bl_datapath(const bl_endpoint_ops* ops, size_t size, double seconds, int both_ways,
                unsigned window, bl_dp_result* result) {
    direction dirs[2];
    pthread_t threads[2];
    int n = both_ways ? 2 : 1;
    double cpu0 = cpu_seconds();
    double start = bl_now_ms();
    for (int i = 0; i < n; ++i) {
        dirs[i] = (direction){ops, i, size, window, start + seconds * 1e3, 0, 0, 0};
        dirs[i].base = ops->received(ops->ctx, 1 - i);
    }
    for (int i = 0; i < n; ++i) {
        if (pthread_create(&threads[i], NULL, sender, &dirs[i]) != 0) {
            return -1;
        }
    }
    for (int i = 0; i < n; ++i) {
        pthread_join(threads[i], NULL);
    }
    double sent_end = bl_now_ms();
    /* drain: wait until nothing more arrives (at most 300 ms) */
    uint64_t last = 0;
    double stable_since = bl_now_ms();
    while (bl_now_ms() - sent_end < 300) {
        uint64_t got = 0, sent = 0;
        for (int i = 0; i < n; ++i) {
            got += ops->received(ops->ctx, 1 - i) - dirs[i].base;
            sent += dirs[i].sent;
        }
        if (got >= sent) {
            break;
        }
        if (got != last) {
            last = got;
            stable_since = bl_now_ms();
        } else if (bl_now_ms() - stable_since > 50) {
            break;
        }
        sleep_us(200);
    }
    memset(result, 0, sizeof *result);
    for (int i = 0; i < n; ++i) {
        result->sent += dirs[i].sent;
        result->send_errors += dirs[i].errors;
        result->received += ops->received(ops->ctx, 1 - i) - dirs[i].base;
    }
    result->cpu_s = cpu_seconds() - cpu0;
    result->seconds = (sent_end - start) / 1e3;
    result->dgrams_per_s = (double)result->received / result->seconds;
    result->mbytes_per_s = result->dgrams_per_s * (double)size / 1e6;
    result->cpu_s_per_mdgram =
        result->received ? result->cpu_s / ((double)result->received / 1e6) : 0;
    result->loss =
        result->sent
            ? (double)(result->sent > result->received ? result->sent - result->received : 0) /
                  (double)result->sent
            : 0;
    return 0;
}

/* ------------------------------------------------------------------ standalone program */
#ifdef BL_MAIN

static void usage(void) {
    fprintf(stderr, "usage: baseline_libnice [options]\n"
                    "  --runs N               connect N times (default 1), one JSON line per run\n"
                    "  --local-address IP     nice_agent_add_local_address (e.g. 127.0.0.1)\n"
                    "  --stun IP:PORT         STUN server\n"
                    "  --turn IP:PORT         TURN server (--turn-tcp for TURN over TCP)\n"
                    "  --user U --pass P      TURN credentials\n"
                    "  --ns-a NS --ns-b NS    run each peer's loop in that network namespace\n"
                    "  --separate-threads     one loop thread per peer without namespaces\n"
                    "  --relay-only           force-relay\n"
                    "  --no-upnp              upnp=FALSE (default: libnice's default)\n"
                    "  --timeout S            per run (default 30)\n"
                    "  --datapath SIZE        after connecting, measure SIZE-byte datagrams\n"
                    "  --seconds S --both     datapath duration; both directions at once\n");
    exit(2);
}

static int split_hostport(const char* s, char** ip, unsigned* port) {
    const char* colon = strrchr(s, ':');
    if (!colon) {
        return -1;
    }
    *ip = g_strndup(s, (gsize)(colon - s));
    *port = (unsigned)atoi(colon + 1);
    return 0;
}

static int op_send(void* ctx, int side, const void* data, size_t len) {
    return bl_pair_send(ctx, side, data, len);
}
static uint64_t op_received(void* ctx, int side) {
    return bl_pair_received(ctx, side);
}

int main(int argc, char** argv) {
    bl_config c;
    memset(&c, 0, sizeof c);
    c.timeout_s = 30;
    c.ready_wait_s = 2;
    int runs = 1, both_ways = 0;
    size_t datapath = 0;
    double seconds = 1;
    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV                                                                                      \
    do {                                                                                           \
        if (!v)                                                                                    \
            usage();                                                                               \
        ++i;                                                                                       \
    } while (0)
        if (!strcmp(a, "--runs")) {
            NEEDV;
            runs = atoi(v);
        } else if (!strcmp(a, "--local-address")) {
            NEEDV;
            c.local_address = v;
        } else if (!strcmp(a, "--stun")) {
            NEEDV;
            char* ip;
            if (split_hostport(v, &ip, &c.stun_port))
                usage();
            c.stun_ip = ip;
        } else if (!strcmp(a, "--turn")) {
            NEEDV;
            char* ip;
            if (split_hostport(v, &ip, &c.turn_port))
                usage();
            c.turn_ip = ip;
        } else if (!strcmp(a, "--turn-tcp")) {
            c.turn_tcp = 1;
        } else if (!strcmp(a, "--user")) {
            NEEDV;
            c.turn_user = v;
        } else if (!strcmp(a, "--pass")) {
            NEEDV;
            c.turn_pass = v;
        } else if (!strcmp(a, "--ns-a")) {
            NEEDV;
            c.ns[0] = v;
        } else if (!strcmp(a, "--ns-b")) {
            NEEDV;
            c.ns[1] = v;
        } else if (!strcmp(a, "--separate-threads")) {
            c.separate_threads = 1;
        } else if (!strcmp(a, "--relay-only")) {
            c.relay_only = 1;
        } else if (!strcmp(a, "--no-upnp")) {
            c.no_upnp = 1;
        } else if (!strcmp(a, "--timeout")) {
            NEEDV;
            c.timeout_s = atof(v);
        } else if (!strcmp(a, "--datapath")) {
            NEEDV;
            datapath = (size_t)atoi(v);
        } else if (!strcmp(a, "--seconds")) {
            NEEDV;
            seconds = atof(v);
        } else if (!strcmp(a, "--both")) {
            both_ways = 1;
        } else {
            usage();
        }
#undef NEEDV
    }
    int failures = 0;
    for (int r = 0; r < runs; ++r) {
        bl_connect_times t;
        char err[256] = "";
        memset(&t, 0, sizeof t);
        bl_pair* pair = bl_pair_connect(&c, &t, err, sizeof err);
        if (!pair) {
            printf("{\"run\":%d,\"ok\":false,\"error\":\"%s\"}\n", r, err);
            failures++;
            continue;
        }
        printf("{\"run\":%d,\"ok\":true,\"connected_ms\":%.3f,\"ready_ms\":%.3f,\"relayed\":%s,"
               "\"pair\":\"%s\"",
               r, t.connected_ms, t.ready_ms, t.relayed ? "true" : "false", t.pair);
        if (datapath) {
            bl_endpoint_ops ops = {op_send, op_received, pair};
            bl_dp_result d;
            bl_datapath(&ops, datapath, seconds, both_ways, 128, &d);
            printf(",\"size\":%zu,\"both\":%s,\"dgrams_per_s\":%.0f,\"mbytes_per_s\":%.2f,"
                   "\"cpu_s_per_mdgram\":%.3f,\"loss\":%.5f",
                   datapath, both_ways ? "true" : "false", d.dgrams_per_s, d.mbytes_per_s,
                   d.cpu_s_per_mdgram, d.loss);
        }
        printf("}\n");
        fflush(stdout);
        bl_pair_free(pair);
    }
    return failures ? 1 : 0;
}
#endif
