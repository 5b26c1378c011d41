/* wsload: the WebSocket load generator of the benchmark harness (compiled by benchmarks/ws.py into
 * benchmarks/.work/; plain C, Linux epoll, no libraries).
 *
 *   wsload echo --port P --conns N --size BYTES [--binary] --duration S [--deflate] [--timeout S]
 *   wsload idle --port P --conns N [--deflate] [--in-flight K] [--timeout S] [--hold S]
 *
 * echo: opens N connections (RFC 6455 handshake, one request per connection, checked 101 and
 * Sec-WebSocket-Accept), then every connection runs a closed loop for S seconds: send one pre-built
 * masked frame (a message of BYTES bytes, text or binary), read and parse the echoed frames until the
 * whole message is back (length and opcode checked; the first echo of each connection is compared byte
 * for byte), send the next. Server pings are answered. Prints one line:
 *   WSJSON {"messages": ..., "duration_us": ..., "p50_us": ..., "p99_us": ..., errors ...}
 * then sends a close frame on every connection and waits (bounded) for the server's close.
 *
 * idle: opens N connections (at most K handshakes in flight), prints WSREADY {...} when all are open,
 * holds them (answering pings, counting connections the server closes) until a line or EOF on stdin
 * or --hold seconds, prints WSJSON {"open": ...} and closes them.
 *
 * --deflate offers permessage-deflate (what browsers and the websockets client send); without it the
 * handshake offers no extension, so every server does the same work per message.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_DONE };

#define HEAD_MAX 2048
#define RBUF (256 * 1024)
#define MASK0 0x37
#define MASK1 0xfa
#define MASK2 0x21
#define MASK3 0x3d
/* RFC 6455's sample key and its accept value. */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

typedef struct {
    int fd, state, want_out, deflate;
    char *head;  /* handshake response, freed once open */
    int head_len;
    size_t req_off;
    /* output: the pre-built data frame (progress) and control frames queued behind/before it */
    int data_active;
    size_t data_off;
    unsigned char ctl[512];
    int ctl_len, ctl_off;
    /* input: frame parser */
    unsigned char fh[14];
    int fh_len, in_payload, op, fin;
    uint64_t remaining;
    int in_msg, msg_op;
    uint64_t msg_len;
    unsigned char cpay[125];
    int cpay_len;
    int verify, bad;
    uint64_t vpos;
    int got_close, sent_close;
    double sent_at;
} conn_t;

static int mode_echo;
static int port, nconns, msg_size = 16, binary, deflate, in_flight = 100;
static double duration = 3, timeout_s = 30, hold_s = 120;
static const char *host = "127.0.0.1";
static unsigned char *payload, *frame;
static size_t frame_len;
static char request[512];
static size_t request_len;
static conn_t *conns;
static int ep;
static unsigned char rbuf[RBUF];

/* errors and counters */
static long e_connect, e_handshake, e_closed, e_mismatch, e_protocol;
static long n_open, n_deflate, n_started;
static long messages;
static int running, measuring;
static double t_end;

/* latency histogram: 1 us buckets below 100 ms, 1 ms buckets up to 100 s */
#define FINE 100000
#define COARSE 100000
static uint64_t hist_fine[FINE], hist_coarse[COARSE];
static double lat_sum, lat_max;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "wsload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void record(double seconds) {
    uint64_t us = (uint64_t)(seconds * 1e6 + 0.5);
    if (us < FINE)
        hist_fine[us]++;
    else if (us / 1000 < COARSE)
        hist_coarse[us / 1000]++;
    else
        hist_coarse[COARSE - 1]++;
    lat_sum += seconds * 1e6;
    if (seconds * 1e6 > lat_max)
        lat_max = seconds * 1e6;
}

static double percentile(double p) {
    uint64_t total = messages, seen = 0, want;
    if (total == 0)
        return 0;
    want = (uint64_t)(p / 100.0 * total + 0.999999);
    if (want < 1)
        want = 1;
    for (int i = 0; i < FINE; i++)
        if ((seen += hist_fine[i]) >= want)
            return i;
    for (int i = 0; i < COARSE; i++)
        if ((seen += hist_coarse[i]) >= want)
            return i * 1000.0;
    return lat_max;
}

static void arm(conn_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (c->want_out == out)
        return;
    c->want_out = out;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void finish(conn_t *c) {
    if (c->state == ST_DONE)
        return;
    if (c->state == ST_OPEN || c->state == ST_CLOSING)
        n_open--;
    c->state = ST_DONE;
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->head);
    c->head = NULL;
}

/* A masked control frame (client frames are always masked), queued. */
static void queue_ctl(conn_t *c, int op, const unsigned char *data, int len) {
    static const unsigned char key[4] = {MASK0, MASK1, MASK2, MASK3};
    if (c->ctl_len + 6 + len > (int)sizeof c->ctl)
        return; /* a flood of pings: drop the extra pong (allowed: only the latest must be answered) */
    unsigned char *p = c->ctl + c->ctl_len;
    p[0] = 0x80 | op;
    p[1] = 0x80 | len;
    memcpy(p + 2, key, 4);
    for (int i = 0; i < len; i++)
        p[6 + i] = data[i] ^ key[i & 3];
    c->ctl_len += 6 + len;
}

/* Write what is pending; 0 on success (including EAGAIN), -1 when the connection is gone. */
static int flush(conn_t *c) {
    for (;;) {
        ssize_t n;
        if (c->ctl_off < c->ctl_len && !(c->data_active && c->data_off > 0)) {
            n = send(c->fd, c->ctl + c->ctl_off, c->ctl_len - c->ctl_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->ctl_off += n;
                if (c->ctl_off == c->ctl_len)
                    c->ctl_off = c->ctl_len = 0;
                continue;
            }
        } else if (c->data_active) {
            n = send(c->fd, frame + c->data_off, frame_len - c->data_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->data_off += n;
                if (c->data_off == frame_len)
                    c->data_active = 0, c->data_off = 0;
                continue;
            }
        } else {
            arm(c, 0);
            return 0;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            arm(c, 1);
            return 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

static void send_message(conn_t *c) {
    c->data_active = 1;
    c->data_off = 0;
    c->sent_at = now();
    if (flush(c) < 0) {
        if (running)
            e_closed++;
        finish(c);
    }
}

static void start_close(conn_t *c) {
    static const unsigned char code[2] = {0x03, 0xe8}; /* 1000 */
    if (c->state != ST_OPEN)
        return;
    c->state = ST_CLOSING;
    c->sent_close = 1;
    queue_ctl(c, 8, code, 2);
    if (flush(c) < 0)
        finish(c);
}

static void on_message(conn_t *c) {
    if (c->msg_len != (uint64_t)msg_size || c->msg_op != (binary ? 2 : 1))
        c->bad = 1;
    if (c->bad) {
        e_mismatch++;
        c->bad = 0;
    }
    c->verify = 0;
    if (c->state != ST_OPEN)
        return;
    if (!mode_echo)
        return; /* idle mode: the server sent a data message; nothing to do */
    double t = now();
    if (measuring && t <= t_end) {
        messages++;
        record(t - c->sent_at);
    }
    if (running)
        send_message(c);
}

/* Frame parser; returns -1 when the connection must be dropped. */
static int parse(conn_t *c, const unsigned char *p, size_t n) {
    while (n > 0) {
        if (!c->in_payload) {
            int need = 2;
            while (n > 0 && c->fh_len < need) {
                c->fh[c->fh_len++] = *p++;
                n--;
                if (c->fh_len == 2) {
                    int l7 = c->fh[1] & 0x7f;
                    need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->fh[1] & 0x80) ? 4 : 0);
                }
            }
            if (c->fh_len >= 2) {
                int l7 = c->fh[1] & 0x7f;
                need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->fh[1] & 0x80) ? 4 : 0);
            }
            if (c->fh_len < need)
                return 0;
            int l7 = c->fh[1] & 0x7f;
            uint64_t len = l7;
            if (l7 == 126)
                len = ((uint64_t)c->fh[2] << 8) | c->fh[3];
            else if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++)
                    len = (len << 8) | c->fh[2 + i];
            }
            c->fin = c->fh[0] & 0x80;
            c->op = c->fh[0] & 0x0f;
            if ((c->fh[1] & 0x80) || ((c->fh[0] & 0x70) && !c->deflate)) {
                e_protocol++; /* a masked server frame, or RSV bits without an extension */
                return -1;
            }
            c->fh_len = 0;
            c->in_payload = 1;
            c->remaining = len;
            c->cpay_len = 0;
            if (c->op >= 8) {
                if (len > 125 || !c->fin) {
                    e_protocol++;
                    return -1;
                }
            } else if (c->op == 1 || c->op == 2) {
                if (c->in_msg) {
                    e_protocol++;
                    return -1;
                }
                c->in_msg = 1;
                c->msg_op = c->op;
                c->msg_len = 0;
                c->vpos = 0;
            } else if (c->op != 0 || !c->in_msg) {
                e_protocol++;
                return -1;
            }
        }
        size_t k = c->remaining < n ? (size_t)c->remaining : n;
        if (c->op >= 8) {
            memcpy(c->cpay + c->cpay_len, p, k);
            c->cpay_len += k;
        } else {
            c->msg_len += k;
            if (c->verify) {
                if (c->vpos + k > (uint64_t)msg_size || memcmp(payload + c->vpos, p, k) != 0)
                    c->bad = 1;
                c->vpos += k;
            }
        }
        p += k;
        n -= k;
        c->remaining -= k;
        if (c->remaining > 0)
            continue;
        c->in_payload = 0;
        if (c->op == 9) { /* ping: pong with the same payload */
            if (c->state == ST_OPEN || c->state == ST_CLOSING) {
                queue_ctl(c, 10, c->cpay, c->cpay_len);
                if (flush(c) < 0)
                    return -1;
            }
        } else if (c->op == 8) {
            c->got_close = 1;
            if (c->state == ST_OPEN) {
                e_closed++; /* the server closed while we were using the connection */
                return -1;
            }
            return -1; /* closing handshake complete (we sent ours first) */
        } else if (c->op < 8 && c->fin) {
            c->in_msg = 0;
            on_message(c);
            if (c->state == ST_DONE)
                return -1;
        }
    }
    return 0;
}

static int start_connect(conn_t *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket: %s (raise RLIMIT_NOFILE?)", strerror(errno));
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = ST_CONNECTING;
    c->want_out = 1;
    n_started++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        e_connect++;
        c->state = ST_DONE;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        return -1;
    }
    return 0;
}

static void fail_handshake(conn_t *c, long *counter) {
    (*counter)++;
    c->state = ST_OPEN; /* so finish() does not count it twice */
    n_open++;
    finish(c);
}

/* Handshake progress on an event; returns 1 when the connection just became open. */
static int handshake(conn_t *c, uint32_t events) {
    if (c->state == ST_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return 0;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            fail_handshake(c, &e_connect);
            return 0;
        }
        c->state = ST_HANDSHAKE;
        c->head = malloc(HEAD_MAX);
        c->head_len = 0;
    }
    if (c->req_off < request_len) {
        ssize_t n = send(c->fd, request + c->req_off, request_len - c->req_off, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN) {
            fail_handshake(c, &e_handshake);
            return 0;
        }
        if (n > 0)
            c->req_off += n;
        arm(c, c->req_off < request_len);
        if (c->req_off < request_len)
            return 0;
    }
    if (!(events & EPOLLIN))
        return 0;
    ssize_t n = recv(c->fd, c->head + c->head_len, HEAD_MAX - 1 - c->head_len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        fail_handshake(c, &e_handshake);
        return 0;
    }
    c->head_len += n;
    c->head[c->head_len] = 0;
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
        if (c->head_len >= HEAD_MAX - 1)
            fail_handshake(c, &e_handshake);
        return 0;
    }
    size_t head_bytes = end + 4 - c->head;
    *end = 0;
    int ok = strncmp(c->head, "HTTP/1.1 101", 12) == 0;
    int accept_ok = 0;
    for (char *line = strstr(c->head, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "sec-websocket-accept:", 21) == 0)
            accept_ok = strstr(l + 21, WS_ACCEPT) != NULL && (strstr(l, "\r\n") == NULL ||
                        strstr(l + 21, WS_ACCEPT) < strstr(l, "\r\n"));
        else if (strncasecmp(l, "sec-websocket-extensions:", 25) == 0) {
            char *eol = strstr(l, "\r\n");
            char *pmd = strcasestr(l, "permessage-deflate");
            if (pmd && (!eol || pmd < eol))
                c->deflate = 1;
        }
    }
    if (!ok || !accept_ok) {
        fail_handshake(c, &e_handshake);
        return 0;
    }
    c->state = ST_OPEN;
    n_open++;
    n_deflate += c->deflate;
    c->verify = 1;
    size_t extra = c->head_len - head_bytes;
    unsigned char tail[HEAD_MAX];
    memcpy(tail, c->head + head_bytes, extra);
    free(c->head);
    c->head = NULL;
    arm(c, 0);
    if (extra && parse(c, tail, extra) < 0) {
        finish(c);
        return 0;
    }
    return 1;
}

static void on_event(conn_t *c, uint32_t events) {
    if (c->state == ST_DONE)
        return;
    if (c->state == ST_CONNECTING || c->state == ST_HANDSHAKE) {
        handshake(c, events);
        return;
    }
    if (events & EPOLLOUT) {
        if (flush(c) < 0) {
            if (c->state == ST_OPEN)
                e_closed++;
            finish(c);
            return;
        }
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        ssize_t n = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            if (c->state == ST_OPEN)
                e_closed++;
            finish(c);
            return;
        }
        if (parse(c, rbuf, n) < 0)
            finish(c);
    }
}

/* Open connections, at most `limit` handshakes at a time, until all are open/failed or the deadline. */
static void open_all(int limit, double deadline) {
    struct epoll_event evs[256];
    int next = 0;
    long pending = 0;
    while (next < nconns && pending < limit) {
        if (start_connect(&conns[next++]) == 0)
            pending++;
    }
    while (pending > 0 && now() < deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            int before = c->state;
            on_event(c, evs[i].events);
            if ((before == ST_CONNECTING || before == ST_HANDSHAKE) && c->state != ST_CONNECTING &&
                c->state != ST_HANDSHAKE) {
                pending--;
                while (next < nconns && pending < limit) {
                    if (start_connect(&conns[next++]) == 0)
                        pending++;
                }
            }
        }
    }
    for (int i = 0; i < nconns; i++) { /* whatever is still half-way at the deadline failed */
        if (conns[i].state == ST_CONNECTING || conns[i].state == ST_HANDSHAKE)
            fail_handshake(&conns[i], &e_handshake);
    }
    e_connect += nconns - n_started;
}

static void loop_until(double until, int stop_on_stdin, int stop_when_all_closed) {
    struct epoll_event evs[256];
    for (;;) {
        double t = now();
        if (t >= until)
            return;
        if (stop_when_all_closed && n_open == 0)
            return;
        int ms = (int)((until - t) * 1000) + 1;
        int n = epoll_wait(ep, evs, 256, ms > 100 ? 100 : ms);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) { /* stdin: a line or EOF ends the hold */
                if (stop_on_stdin) {
                    char b[64];
                    if (read(0, b, sizeof b) >= 0)
                        return;
                }
                continue;
            }
            on_event(evs[i].data.ptr, evs[i].events);
        }
    }
}

static void build(void) {
    payload = malloc(msg_size ? msg_size : 1);
    for (int i = 0; i < msg_size; i++)
        payload[i] = binary ? (unsigned char)(i * 131 + 7) : (unsigned char)('a' + i % 26);
    size_t hl = 2 + (msg_size < 126 ? 0 : msg_size < 65536 ? 2 : 8) + 4;
    frame_len = hl + msg_size;
    frame = malloc(frame_len);
    frame[0] = 0x80 | (binary ? 2 : 1);
    if (msg_size < 126)
        frame[1] = 0x80 | msg_size;
    else if (msg_size < 65536) {
        frame[1] = 0x80 | 126;
        frame[2] = msg_size >> 8;
        frame[3] = msg_size & 0xff;
    } else {
        frame[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            frame[2 + i] = (uint64_t)msg_size >> (56 - 8 * i);
    }
    unsigned char key[4] = {MASK0, MASK1, MASK2, MASK3};
    memcpy(frame + hl - 4, key, 4);
    for (int i = 0; i < msg_size; i++)
        frame[hl + i] = payload[i] ^ key[i & 3];
    request_len = snprintf(request, sizeof request,
                           "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: " WS_KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
                           host, port,
                           deflate ? "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" : "");
}

static void raise_nofile(long want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)want > rl.rlim_cur) {
        rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || (rlim_t)want < rl.rlim_max) ? (rlim_t)want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void print_errors(void) {
    printf("\"connect\": %ld, \"handshake\": %ld, \"closed\": %ld, \"mismatch\": %ld, \"protocol\": %ld, "
           "\"conns\": %d, \"deflate\": %ld",
           e_connect, e_handshake, e_closed, e_mismatch, e_protocol, nconns, n_deflate);
}

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "echo") && strcmp(argv[1], "idle")))
        die("usage: wsload echo|idle --port P --conns N [--size B] [--binary] [--duration S] [--deflate] "
            "[--in-flight K] [--timeout S] [--hold S] [--host 127.0.0.1]");
    mode_echo = strcmp(argv[1], "echo") == 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--binary")) binary = 1;
        else if (!strcmp(a, "--deflate")) deflate = 1;
        else if (!v) die("%s needs a value", a);
        else if (!strcmp(a, "--port")) port = atoi(v), i++;
        else if (!strcmp(a, "--conns")) nconns = atoi(v), i++;
        else if (!strcmp(a, "--size")) msg_size = atoi(v), i++;
        else if (!strcmp(a, "--duration")) duration = atof(v), i++;
        else if (!strcmp(a, "--timeout")) timeout_s = atof(v), i++;
        else if (!strcmp(a, "--hold")) hold_s = atof(v), i++;
        else if (!strcmp(a, "--in-flight")) in_flight = atoi(v), i++;
        else if (!strcmp(a, "--host")) host = v, i++;
        else die("unknown option %s", a);
    }
    if (port <= 0 || nconns <= 0 || msg_size < 0)
        die("--port and --conns are required");
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(nconns + 64L);
    build();
    conns = calloc(nconns, sizeof *conns);
    ep = epoll_create1(EPOLL_CLOEXEC);
    double t0 = now();
    open_all(mode_echo ? nconns : in_flight, t0 + timeout_s);

    if (!mode_echo) {
        printf("WSREADY {\"open\": %ld, \"seconds\": %.3f, ", n_open, now() - t0);
        print_errors();
        printf("}\n");
        fflush(stdout);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
        epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
        loop_until(now() + hold_s, 1, 0);
        printf("WSJSON {\"open\": %ld, \"held_seconds\": %.3f, ", n_open, now() - t0);
        print_errors();
        printf("}\n");
        fflush(stdout);
        for (int i = 0; i < nconns; i++) { /* best effort close frames, then the sockets */
            if (conns[i].state == ST_OPEN) {
                static const unsigned char code[2] = {0x03, 0xe8};
                queue_ctl(&conns[i], 8, code, 2);
                send(conns[i].fd, conns[i].ctl, conns[i].ctl_len, MSG_NOSIGNAL | MSG_DONTWAIT);
            }
            finish(&conns[i]);
        }
        return 0;
    }

    if (n_open < nconns) { /* report and stop: a partial set of connections is not the scenario */
        printf("WSJSON {\"messages\": 0, \"duration_us\": 0, \"p50_us\": 0, \"p90_us\": 0, \"p99_us\": 0, "
               "\"max_us\": 0, \"mean_us\": 0, ");
        print_errors();
        printf("}\n");
        return 1;
    }
    running = measuring = 1;
    double start = now();
    t_end = start + duration;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == ST_OPEN)
            send_message(&conns[i]);
    loop_until(t_end, 0, 1);
    double stop = now();
    running = measuring = 0;
    double elapsed = (stop < t_end ? stop : t_end) - start;
    printf("WSJSON {\"messages\": %ld, \"duration_us\": %.0f, \"p50_us\": %.0f, \"p90_us\": %.0f, "
           "\"p99_us\": %.0f, \"max_us\": %.0f, \"mean_us\": %.1f, ",
           messages, elapsed * 1e6, percentile(50), percentile(90), percentile(99), lat_max,
           messages ? lat_sum / messages : 0.0);
    print_errors();
    printf("}\n");
    fflush(stdout);
    /* Closing handshake on every connection (after the message in flight), bounded. */
    for (int i = 0; i < nconns; i++)
        start_close(&conns[i]);
    loop_until(now() + 5.0, 0, 1);
    for (int i = 0; i < nconns; i++)
        finish(&conns[i]);
    return 0;
}
