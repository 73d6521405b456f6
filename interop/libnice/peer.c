/* libnice peer for the icepunch interop file contract (see interop/README.md).
 *
 * libnice driven directly with its defaults (RFC 5245 compatibility, ICE-UDP and ICE-TCP,
 * aggressive nomination), its own GMainLoop. The only deviation: addresses given with
 * --interface are added with nice_agent_add_local_address(), since libnice never gathers
 * on loopback by itself.
 */
#include <agent.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Data phase, as `icepunch connect`: raw datagrams; stdin lines longer than this are split. */
#define MAX_DATAGRAM 1200
#define DRAIN_QUIET_US (500 * G_TIME_SPAN_MILLISECOND) /* after stdin EOF: quiet period */
#define DRAIN_MAX_US (3 * G_USEC_PER_SEC)              /* ... and its bound */

typedef struct {
    /* options */
    gboolean controlling, relay_only, echo, json, tcp_only;
    const char *local_file, *remote_file, *turn, *user, *pass;
    GPtrArray* interfaces;
    double timeout, idle;
    /* state */
    GMainLoop* loop;
    NiceAgent* agent;
    guint stream;
    gint64 start_us, deadline_us, checks_start_us;
    gboolean gathered, have_remote, connected, lost;
    GQueue pending;          /* datagrams (GBytes) received before connected, or echoes not sent */
    gint64 last_received_us; /* 0: nothing received yet */
    GString* in;             /* stdin bytes not sent yet */
    gint64 eof_us;           /* 0: stdin still open */
    int rc;
} Peer;

static Peer P;

static gint64 now_us(void) {
    return g_get_monotonic_time();
}

static void emit_json_error(const char* msg) {
    if (P.json) {
        GString* s = g_string_new("{\"connected\":false,\"error\":\"");
        for (const char* c = msg; *c; c++) {
            if (*c == '"' || *c == '\\')
                g_string_append_c(s, '\\');
            if ((unsigned char)*c < 0x20)
                g_string_append_c(s, ' ');
            else
                g_string_append_c(s, *c);
        }
        g_string_append(s, "\"}\n");
        fputs(s->str, stdout);
        fflush(stdout);
        g_string_free(s, TRUE);
    } else {
        fprintf(stderr, "libnice peer: %s\n", msg);
    }
}

static void fail(const char* msg) {
    emit_json_error(msg);
    P.rc = 1;
    g_main_loop_quit(P.loop);
}

static const char* type_name(NiceCandidateType t) {
    switch (t) {
    case NICE_CANDIDATE_TYPE_HOST:
        return "host";
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
        return "srflx";
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
        return "prflx";
    case NICE_CANDIDATE_TYPE_RELAYED:
        return "relay";
    }
    return "unknown";
}

static void endpoint(const NiceAddress* a, char* out, size_t n) {
    char ip[NICE_ADDRESS_STRING_LEN];
    nice_address_to_string(a, ip);
    if (strchr(ip, ':'))
        snprintf(out, n, "[%s]:%u", ip, nice_address_get_port(a));
    else
        snprintf(out, n, "%s:%u", ip, nice_address_get_port(a));
}

static gboolean send_datagram(const char* data, gsize len) {
    return nice_agent_send(P.agent, P.stream, 1, (guint)len, data) == (gint)len;
}

static gboolean deadline_cb(gpointer data) {
    (void)data;
    if (!P.connected)
        fail(P.have_remote ? "not connected: timed out" : "no complete peer description in time");
    else
        g_main_loop_quit(P.loop);
    return G_SOURCE_REMOVE;
}

/* ---- data phase: raw datagrams, no framing, no handshake ---- */

/* --echo: send back what is queued, in order, as far as sends work. */
static void flush_echo_queue(void) {
    GBytes* d;
    while ((d = g_queue_peek_head(&P.pending))) {
        gsize len;
        const char* data = g_bytes_get_data(d, &len);
        if (!send_datagram(data, len))
            break;
        g_bytes_unref(g_queue_pop_head(&P.pending));
    }
}

static void write_out(const char* data, gsize len) {
    fwrite(data, 1, len, stdout);
    fflush(stdout);
}

/* libnice hands every non-STUN datagram of a known stream to this callback, also before the
 * component is connected (nice_agent_send() fails until there is a selected pair): so what
 * comes early is queued, in arrival order (echo: sent back once connected; otherwise written
 * after the result line). */
static void recv_cb(NiceAgent* agent, guint stream, guint component, guint len, gchar* buf,
                    gpointer data) {
    (void)agent;
    (void)stream;
    (void)component;
    (void)data;
    P.last_received_us = now_us();
    if (P.connected && g_queue_is_empty(&P.pending)) {
        if (!P.echo)
            write_out(buf, len);
        else if (send_datagram(buf, len))
            return;
        else
            g_queue_push_tail(&P.pending, g_bytes_new(buf, len)); /* retried by the tick */
        return;
    }
    g_queue_push_tail(&P.pending, g_bytes_new(buf, len));
    if (P.connected && P.echo)
        flush_echo_queue();
}

/* --echo: until --timeout (deadline_cb), a lost connection, or --idle after the last datagram. */
static gboolean echo_tick_cb(gpointer data) {
    (void)data;
    flush_echo_queue();
    if (P.last_received_us && now_us() - P.last_received_us >= (gint64)(P.idle * G_USEC_PER_SEC)) {
        g_main_loop_quit(P.loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/* After stdin EOF: until DRAIN_QUIET without a datagram, at most DRAIN_MAX. */
static gboolean drain_tick_cb(gpointer data) {
    (void)data;
    gint64 quiet_from = MAX(P.eof_us, P.last_received_us);
    gint64 now = now_us();
    if (now >= quiet_from + DRAIN_QUIET_US || now >= P.eof_us + DRAIN_MAX_US) {
        g_main_loop_quit(P.loop);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/* One datagram per line with its "\n"; longer lines in MAX_DATAGRAM pieces; the unterminated
 * rest at EOF as it is. */
static void send_stdin_datagrams(gboolean at_eof) {
    while (P.in->len > 0) {
        const char* nl = memchr(P.in->str, '\n', P.in->len);
        gsize n = 0;
        if (nl && (gsize)(nl - P.in->str) < MAX_DATAGRAM)
            n = (gsize)(nl - P.in->str) + 1;
        else if (P.in->len >= MAX_DATAGRAM)
            n = MAX_DATAGRAM;
        else if (at_eof)
            n = P.in->len;
        else
            break;
        if (!send_datagram(P.in->str, n))
            fprintf(stderr, "libnice peer: send failed\n");
        g_string_erase(P.in, 0, (gssize)n);
    }
}

static gboolean stdin_cb(GIOChannel* ch, GIOCondition cond, gpointer data) {
    (void)ch;
    (void)cond;
    (void)data;
    char chunk[65536];
    ssize_t got = read(STDIN_FILENO, chunk, sizeof chunk); /* raw bytes, no line translation */
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return G_SOURCE_CONTINUE;
    if (got > 0) {
        g_string_append_len(P.in, chunk, got);
        send_stdin_datagrams(FALSE);
        return G_SOURCE_CONTINUE;
    }
    send_stdin_datagrams(TRUE); /* EOF or error */
    P.eof_us = now_us();
    g_timeout_add(20, drain_tick_cb, NULL);
    return G_SOURCE_REMOVE;
}

static void start_data_phase(void) {
    if (!g_queue_is_empty(&P.pending))
        fprintf(stderr, "libnice peer: %u datagram(s) arrived before connected, %s now\n",
                g_queue_get_length(&P.pending), P.echo ? "echoed" : "written");
    if (P.echo) {
        flush_echo_queue();
        g_timeout_add(20, echo_tick_cb, NULL);
        return;
    }
    GBytes* d;
    while ((d = g_queue_pop_head(&P.pending))) {
        gsize len;
        const char* bytes = g_bytes_get_data(d, &len);
        write_out(bytes, len);
        g_bytes_unref(d);
    }
    P.in = g_string_new(NULL);
    GIOChannel* ch = g_io_channel_unix_new(STDIN_FILENO);
    g_io_add_watch(ch, G_IO_IN | G_IO_HUP | G_IO_ERR, stdin_cb, NULL);
    g_io_channel_unref(ch);
}

/* ---- connecting ---- */

static void maybe_connected(void) {
    if (P.connected)
        return;
    NiceComponentState st = nice_agent_get_component_state(P.agent, P.stream, 1);
    if (st != NICE_COMPONENT_STATE_CONNECTED && st != NICE_COMPONENT_STATE_READY)
        return;
    NiceCandidate *local = NULL, *remote = NULL;
    if (!nice_agent_get_selected_pair(P.agent, P.stream, 1, &local, &remote))
        return;
    P.connected = TRUE;
    long ms = (long)((now_us() - P.checks_start_us) / 1000);
    char l[80], r[80];
    endpoint(&local->addr, l, sizeof l);
    endpoint(&remote->addr, r, sizeof r);
    if (P.json) {
        printf("{\"connected\":true,\"ms_to_connected\":%ld,\"local_type\":\"%s\",\"remote_type\":"
               "\"%s\","
               "\"local\":\"%s\",\"remote\":\"%s\"}\n",
               ms, type_name(local->type), type_name(remote->type), l, r);
        fflush(stdout);
    } else {
        fprintf(stderr, "libnice peer: connected in %ld ms: %s %s -> %s %s\n", ms,
                type_name(local->type), l, type_name(remote->type), r);
    }
    start_data_phase();
}

static void state_cb(NiceAgent* agent, guint stream, guint component, guint state, gpointer d) {
    (void)agent;
    (void)stream;
    (void)component;
    (void)d;
    if (state == NICE_COMPONENT_STATE_FAILED) {
        if (!P.connected) {
            fail("not connected: ICE failed");
        } else if (!P.lost) {
            P.lost = TRUE;
            if (P.echo && P.last_received_us) {
                /* An echo peer whose counterpart leaves after its data is done: the normal end
                 * (ICE-TCP sees the close at once, before any --idle). */
                fprintf(stderr, "libnice peer: the peer went away\n");
            } else {
                fprintf(stderr, "libnice peer: connection lost: ICE failed\n");
                P.rc = 1;
            }
            g_main_loop_quit(P.loop);
        }
        return;
    }
    maybe_connected();
}

static void pair_cb(NiceAgent* agent, guint stream, guint component, NiceCandidate* l,
                    NiceCandidate* r, gpointer d) {
    (void)agent;
    (void)stream;
    (void)component;
    (void)l;
    (void)r;
    (void)d;
    maybe_connected();
}

static gboolean poll_remote_cb(gpointer data) {
    (void)data;
    gchar* text = NULL;
    if (!g_file_get_contents(P.remote_file, &text, NULL, NULL))
        return G_SOURCE_CONTINUE;
    gchar** lines = g_strsplit(text, "\n", -1);
    g_free(text);
    const char* last = NULL;
    for (gchar** l = lines; *l; l++) {
        g_strstrip(*l);
        if (**l)
            last = *l;
    }
    if (!last || (strcmp(last, "a=end-of-candidates") && strcmp(last, "end-of-candidates"))) {
        g_strfreev(lines);
        return G_SOURCE_CONTINUE;
    }
    const char *ufrag = NULL, *pwd = NULL;
    GSList* cands = NULL;
    for (gchar** l = lines; *l; l++) {
        const char* v = *l;
        if (g_str_has_prefix(v, "a="))
            v += 2;
        if (g_str_has_prefix(v, "ice-ufrag:"))
            ufrag = v + 10;
        else if (g_str_has_prefix(v, "ice-pwd:"))
            pwd = v + 8;
        else if (g_str_has_prefix(v, "candidate:")) {
            gchar* sdp = g_strconcat("a=", v, NULL);
            NiceCandidate* c = nice_agent_parse_remote_candidate_sdp(P.agent, P.stream, sdp);
            if (c)
                cands = g_slist_append(cands, c);
            else
                fprintf(stderr, "libnice peer: cannot parse candidate \"%s\"\n", sdp);
            g_free(sdp);
        }
    }
    P.have_remote = TRUE;
    P.checks_start_us = now_us();
    if (!ufrag || !pwd) {
        fail("peer description lacks ice-ufrag/ice-pwd");
    } else {
        nice_agent_set_remote_credentials(P.agent, P.stream, ufrag, pwd);
        int n = cands ? nice_agent_set_remote_candidates(P.agent, P.stream, 1, cands) : 0;
        if (n <= 0)
            fail("no usable remote candidate");
    }
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    g_strfreev(lines);
    return G_SOURCE_REMOVE;
}

static void gathering_done_cb(NiceAgent* agent, guint stream, gpointer data) {
    (void)data;
    if (P.gathered)
        return;
    P.gathered = TRUE;
    gchar *ufrag = NULL, *pwd = NULL;
    nice_agent_get_local_credentials(agent, stream, &ufrag, &pwd);
    GString* s = g_string_new(NULL);
    g_string_append_printf(s, "a=ice-ufrag:%s\r\na=ice-pwd:%s\r\n", ufrag, pwd);
    GSList* cands = nice_agent_get_local_candidates(agent, stream, 1);
    for (GSList* i = cands; i; i = i->next) {
        gchar* line = nice_agent_generate_local_candidate_sdp(agent, i->data);
        g_string_append_printf(s, "%s\r\n", line);
        g_free(line);
    }
    g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
    g_string_append(s, "a=end-of-candidates\r\n");
    gchar* tmp = g_strdup_printf("%s.tmp.%d", P.local_file, (int)getpid());
    GError* err = NULL;
    if (!g_file_set_contents(tmp, s->str, (gssize)s->len, &err) || rename(tmp, P.local_file) != 0) {
        fail(err ? err->message : strerror(errno));
        g_clear_error(&err);
    } else {
        g_timeout_add(50, poll_remote_cb, NULL);
    }
    g_free(tmp);
    g_string_free(s, TRUE);
    g_free(ufrag);
    g_free(pwd);
}

static void closed_cb(GObject* src, GAsyncResult* res, gpointer data) {
    (void)src;
    (void)res;
    (void)data;
    g_main_loop_quit(P.loop);
}

static gboolean close_bound_cb(gpointer data) {
    (void)data;
    g_main_loop_quit(P.loop);
    return G_SOURCE_REMOVE;
}

/* ---- setup ---- */

static gboolean add_interface(const char* name) {
    NiceAddress addr;
    nice_address_init(&addr);
    if (nice_address_set_from_string(&addr, name))
        return nice_agent_add_local_address(P.agent, &addr);
    /* an interface name: add its IPv4 addresses */
    struct ifaddrs *ifs = NULL, *i;
    gboolean any = FALSE;
    if (getifaddrs(&ifs) != 0)
        return FALSE;
    for (i = ifs; i; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && strcmp(i->ifa_name, name) == 0) {
            nice_address_set_from_sockaddr(&addr, i->ifa_addr);
            nice_address_set_port(&addr, 0);
            any |= nice_agent_add_local_address(P.agent, &addr);
        }
    }
    freeifaddrs(ifs);
    return any;
}

static gboolean parse_turn(const char* url, char** host, guint* port, NiceRelayType* type) {
    if (!g_str_has_prefix(url, "turn:"))
        return FALSE;
    gchar* rest = g_strdup(url + 5);
    *type = NICE_RELAY_TYPE_TURN_UDP;
    gchar* q = strchr(rest, '?');
    if (q) {
        *q++ = '\0';
        if (strcmp(q, "transport=tcp") == 0)
            *type = NICE_RELAY_TYPE_TURN_TCP;
        else if (strcmp(q, "transport=udp") != 0) {
            g_free(rest);
            return FALSE;
        }
    }
    *port = 3478;
    gchar* colon = strrchr(rest, ':');
    if (colon && !strchr(rest, ']') && strchr(rest, ':') == colon) {
        *colon = '\0';
        *port = (guint)atoi(colon + 1);
    }
    *host = rest;
    return TRUE;
}

static void usage(const char* msg) {
    if (msg)
        fprintf(stderr, "libnice peer: %s\n", msg);
    fprintf(msg ? stderr : stdout,
            "usage: libnice-peer --role controlling|controlled --local-file L --remote-file R\n"
            "  [--turn turn:IP:PORT?transport=udp --user U --pass P] [--relay-only]\n"
            "  [--interface ADDR|NAME] [--echo [--idle S]] [--timeout S] [--json]\n");
    exit(msg ? 2 : 0);
}

int main(int argc, char** argv) {
    const char* role = NULL;
    P.interfaces = g_ptr_array_new();
    P.timeout = 60;
    P.idle = 10;
    g_queue_init(&P.pending);
    for (int i = 1; i < argc; i++) {
        const char* a = argv[i];
#define VALUE() (i + 1 < argc ? argv[++i] : (usage("missing value"), NULL))
        if (!strcmp(a, "--role"))
            role = VALUE();
        else if (!strcmp(a, "--local-file"))
            P.local_file = VALUE();
        else if (!strcmp(a, "--remote-file"))
            P.remote_file = VALUE();
        else if (!strcmp(a, "--turn"))
            P.turn = VALUE();
        else if (!strcmp(a, "--user"))
            P.user = VALUE();
        else if (!strcmp(a, "--pass"))
            P.pass = VALUE();
        else if (!strcmp(a, "--interface"))
            g_ptr_array_add(P.interfaces, (gpointer)VALUE());
        else if (!strcmp(a, "--timeout"))
            P.timeout = atof(VALUE());
        else if (!strcmp(a, "--idle"))
            P.idle = atof(VALUE());
        else if (!strcmp(a, "--relay-only"))
            P.relay_only = TRUE;
        else if (!strcmp(a, "--echo"))
            P.echo = TRUE;
        else if (!strcmp(a, "--json"))
            P.json = TRUE;
        else if (!strcmp(a, "--tcp-only"))
            P.tcp_only = TRUE; /* extension: ice-udp off */
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage(NULL);
        else
            usage("unknown argument");
#undef VALUE
    }
    if (!role || (strcmp(role, "controlling") && strcmp(role, "controlled")))
        usage("--role controlling|controlled is required");
    if (!P.local_file || !P.remote_file)
        usage("--local-file and --remote-file are required");
    if (P.relay_only && !P.turn)
        usage("--relay-only needs --turn");
    P.controlling = !strcmp(role, "controlling");

    P.start_us = now_us();
    P.deadline_us = P.start_us + (gint64)(P.timeout * G_USEC_PER_SEC);
    P.loop = g_main_loop_new(NULL, FALSE);
    P.agent = nice_agent_new(g_main_loop_get_context(P.loop), NICE_COMPATIBILITY_RFC5245);
    g_object_set(P.agent, "controlling-mode", P.controlling, NULL);
    if (P.relay_only)
        g_object_set(P.agent, "force-relay", TRUE, NULL);
    if (P.tcp_only)
        g_object_set(P.agent, "ice-udp", FALSE, NULL);
    for (guint i = 0; i < P.interfaces->len; i++)
        if (!add_interface(g_ptr_array_index(P.interfaces, i))) {
            emit_json_error("cannot use --interface");
            return 1;
        }
    g_signal_connect(P.agent, "candidate-gathering-done", G_CALLBACK(gathering_done_cb), NULL);
    g_signal_connect(P.agent, "component-state-changed", G_CALLBACK(state_cb), NULL);
    g_signal_connect(P.agent, "new-selected-pair-full", G_CALLBACK(pair_cb), NULL);
    P.stream = nice_agent_add_stream(P.agent, 1);
    if (P.turn) {
        char* host = NULL;
        guint port = 0;
        NiceRelayType type;
        if (!parse_turn(P.turn, &host, &port, &type))
            usage("bad --turn url (want turn:IP:PORT?transport=udp)");
        nice_agent_set_relay_info(P.agent, P.stream, 1, host, port, P.user ? P.user : "",
                                  P.pass ? P.pass : "", type);
        g_free(host);
    }
    nice_agent_attach_recv(P.agent, P.stream, 1, g_main_loop_get_context(P.loop), recv_cb, NULL);
    if (!nice_agent_gather_candidates(P.agent, P.stream)) {
        emit_json_error("gathering failed to start");
        return 1;
    }
    guint deadline = g_timeout_add((guint)(P.timeout * 1000), deadline_cb, NULL);
    g_main_loop_run(P.loop);
    fflush(stdout);
    /* Release TURN allocations (and whatever else) cleanly, bounded to 1 s. */
    if (!g_main_context_find_source_by_id(g_main_loop_get_context(P.loop), deadline))
        deadline = 0; /* fired already */
    if (deadline)
        g_source_remove(deadline);
    nice_agent_close_async(P.agent, closed_cb, NULL);
    guint bound = g_timeout_add(1000, close_bound_cb, NULL);
    g_main_loop_run(P.loop);
    if (g_main_context_find_source_by_id(g_main_loop_get_context(P.loop), bound))
        g_source_remove(bound);
    g_object_unref(P.agent);
    g_main_loop_unref(P.loop);
    return P.rc;
}
