/*
 * tcpgen.c - a SIP-over-TCP load generator for loopback benchmarks (scripts/bench_tcp.py).
 *
 * Opens C persistent TCP connections to one loopback target and keeps W OPTIONS requests in
 * flight on each (closed loop): every final response (status >= 200) read on a connection
 * lets a new request go out on it; the requests made free by one read go out in one write().
 * Responses are framed by their Content-Length (RFC 3261 section 18.3: mandatory on streams)
 * and matched to their request by the sequence number in the Call-ID. One thread, epoll.
 *
 * Phases, so that only request/response work falls between the caller's CPU readings:
 *   1. connect all connections; warm-up load for -W seconds; wait until nothing is in flight;
 *   2. print "warm" on stdout and wait for a line on stdin (the caller reads the server's CPU);
 *   3. -d seconds of load, then up to -g seconds for the last answers;
 *   4. print one JSON line on stdout and wait for end of input on stdin (the caller reads the
 *      server's CPU again); then close every connection and exit.
 * With -n (no handshake) phases 2 and 4 do not wait for stdin.
 *
 * Options:
 *   -a ADDR  target IPv4 address (default 127.0.0.1); anything outside 127.0.0.0/8 is refused
 *   -p PORT  target TCP port (required)
 *   -c C     connections (default 100, at most 20000)
 *   -w W     requests in flight per connection (default 4)
 *   -d SEC   measured load (default 3)     -W SEC  warm-up (default 1; 0: none)
 *   -g SEC   grace for the last answers (default 0.5)
 *   -n       no stdin handshake
 *
 * JSON: connections, inflight_per_conn, sent, received (matched final responses),
 * received_in_window, rate (received_in_window / duration), lost, loss_pct, provisional,
 * unmatched, closed (connections the server closed), p50_us, p99_us, p999_us, max_us (from
 * the clock before the write() to the clock after the read() that completed the answer),
 * cpu_s (this process during phase 3) and elapsed_s.
 *
 *   gcc -O2 -Wall -Wextra -o tcpgen tcpgen.c && ./tcpgen -p 5060 -n
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 20000
#define RX_BUF 65536
#define TX_BUF 65536
#define RING_BITS 20
#define RING_SIZE (1u << RING_BITS)
#define RING_MASK (RING_SIZE - 1)
#define HIST_US 1000000
#define SEQ_HEX 16

struct conn {
    int fd, window, inflight, open, wr_armed;
    size_t rx_len, tx_off, tx_len;
    char *rx, *tx;
    char req[1024];         /* this connection's request; seq patched in at two offsets */
    size_t req_len, off_branch, off_callid;
};

struct entry { uint64_t t_ns; uint32_t seq_lo; uint8_t live; };

static struct conn *conns;
static int nconns = 100, per_conn = 4, epfd;
static struct entry *ring;
static uint32_t *hist;
static uint64_t next_seq = 1, sent, received, received_in_window, provisional, unmatched;
static uint64_t closed_by_peer, lat_max_ns, counting = 0;
static int sending = 1;
static unsigned run_tag;

static uint64_t now_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) { perror(what); exit(1); }

static const char HEXD[] = "0123456789abcdef";
static void put_hex(char *p, uint64_t v) {
    for (int i = SEQ_HEX - 1; i >= 0; i--) { p[i] = HEXD[v & 15]; v >>= 4; }
}

static void build_request(struct conn *c, int lport, const char *host, int port) {
    char seq[SEQ_HEX + 1];
    memset(seq, '0', SEQ_HEX);
    seq[SEQ_HEX] = 0;
    int n = snprintf(c->req, sizeof c->req,
        "OPTIONS sip:bench@%s:%d SIP/2.0\r\n"
        "Via: SIP/2.0/TCP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:tcpgen@127.0.0.1:%d>;tag=%08x\r\n"
        "To: <sip:bench@%s:%d>\r\n"
        "Call-ID: tg%08x-%s@127.0.0.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Contact: <sip:tcpgen@127.0.0.1:%d;transport=tcp>\r\n"
        "Accept: application/sdp\r\n"
        "User-Agent: tcpgen\r\n"
        "Content-Length: 0\r\n\r\n",
        host, port, lport, seq, lport, run_tag, host, port, run_tag, seq, lport);
    c->req_len = (size_t)n;
    c->off_branch = (size_t)(strstr(c->req, "z9hG4bK-") + 8 - c->req);
    c->off_callid = (size_t)(strstr(c->req, "Call-ID: tg") + 11 + 8 + 1 - c->req);
}

static void want_write(struct conn *c, int on) {
    if (c->wr_armed == on) return;
    c->wr_armed = on;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns)};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void close_conn(struct conn *c) {
    if (!c->open) return;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->open = 0;
}

static void flush(struct conn *c) {
    while (c->tx_off < c->tx_len) {
        ssize_t w = write(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off);
        if (w < 0) {
            if (errno == EAGAIN) { want_write(c, 1); return; }
            if (errno == EINTR) continue;
            closed_by_peer++;
            close_conn(c);
            return;
        }
        c->tx_off += (size_t)w;
    }
    want_write(c, 0);
    c->tx_off = c->tx_len = 0;
}

/* queues requests until the connection has its window full; one write for all of them */
static void fill(struct conn *c, uint64_t t) {
    if (!c->open || !sending) return;
    if (c->tx_off) {  /* compact what is still unsent */
        memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
        c->tx_len -= c->tx_off;
        c->tx_off = 0;
    }
    int queued = 0;
    while (c->inflight < c->window && c->tx_len + c->req_len <= TX_BUF) {
        uint64_t seq = next_seq++;
        put_hex(c->req + c->off_branch, seq);
        put_hex(c->req + c->off_callid, seq);
        memcpy(c->tx + c->tx_len, c->req, c->req_len);
        c->tx_len += c->req_len;
        struct entry *e = &ring[seq & RING_MASK];
        e->t_ns = t;
        e->seq_lo = (uint32_t)seq;
        e->live = 1;
        c->inflight++;
        sent++;
        queued++;
    }
    if (queued) flush(c);
}

static const char *find_header(const char *p, const char *end, const char *name, size_t nlen,
                               const char *compact) {
    /* value of header `name` (or its compact form) in the header section [p, end) */
    for (const char *line = p; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) eol = end;
        size_t len = (size_t)(eol - line);
        const char *colon = NULL;
        if (len > nlen && strncasecmp(line, name, nlen) == 0) colon = line + nlen;
        else if (compact && len > 1 && (line[0] | 32) == compact[0]) colon = line + 1;
        if (colon) {
            while (colon < eol && (*colon == ' ' || *colon == '\t')) colon++;
            if (colon < eol && *colon == ':') {
                colon++;
                while (colon < eol && (*colon == ' ' || *colon == '\t')) colon++;
                return colon;
            }
        }
        line = eol + 1;
    }
    return NULL;
}

static void on_response(struct conn *c, const char *p, size_t hdr_len, uint64_t t) {
    if (hdr_len < 12 || memcmp(p, "SIP/2.0 ", 8) != 0) { unmatched++; return; }
    int status = (p[8] - '0') * 100 + (p[9] - '0') * 10 + (p[10] - '0');
    if (status < 200) { provisional++; return; }
    const char *v = find_header(p, p + hdr_len, "Call-ID", 7, "i");
    if (!v || p + hdr_len - v < 11 + SEQ_HEX || v[0] != 't' || v[1] != 'g') { unmatched++; return; }
    uint64_t seq = 0;
    for (int i = 0; i < SEQ_HEX; i++) {
        char ch = v[11 + i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) { unmatched++; return; }
        seq = seq << 4 | (uint64_t)d;
    }
    struct entry *e = &ring[seq & RING_MASK];
    if (!e->live || e->seq_lo != (uint32_t)seq) { unmatched++; return; }
    e->live = 0;
    c->inflight--;
    if (!counting) return;
    received++;
    if (sending) received_in_window++;
    uint64_t lat = t - e->t_ns;
    if (lat > lat_max_ns) lat_max_ns = lat;
    uint64_t us = lat / 1000;
    hist[us < HIST_US ? us : HIST_US]++;
}

static void on_readable(struct conn *c) {
    for (;;) {
        ssize_t r = read(c->fd, c->rx + c->rx_len, RX_BUF - c->rx_len);
        if (r < 0) {
            if (errno == EAGAIN) break;
            if (errno == EINTR) continue;
            closed_by_peer++;
            close_conn(c);
            return;
        }
        if (r == 0) { closed_by_peer++; close_conn(c); return; }
        c->rx_len += (size_t)r;
        uint64_t t = now_ns(CLOCK_MONOTONIC);
        size_t off = 0;
        for (;;) {  /* every whole message in the buffer */
            while (off + 2 <= c->rx_len && c->rx[off] == '\r' && c->rx[off + 1] == '\n') off += 2;
            char *start = c->rx + off;
            char *hdr_end = memmem(start, c->rx_len - off, "\r\n\r\n", 4);
            if (!hdr_end) break;
            size_t hdr_len = (size_t)(hdr_end - start) + 2;
            const char *cl = find_header(start, start + hdr_len, "Content-Length", 14, "l");
            size_t body = cl ? strtoul(cl, NULL, 10) : 0;
            size_t total = hdr_len + 2 + body;
            if (off + total > c->rx_len) break;
            on_response(c, start, hdr_len, t);
            off += total;
        }
        if (off) {
            memmove(c->rx, c->rx + off, c->rx_len - off);
            c->rx_len -= off;
        }
        if (c->rx_len == RX_BUF) { fprintf(stderr, "tcpgen: an answer over 64 KiB\n"); exit(1); }
        if ((size_t)r < RX_BUF / 2) break;
    }
    fill(c, now_ns(CLOCK_MONOTONIC));
}

static void loop_until(uint64_t deadline, int stop_when_idle) {
    struct epoll_event evs[512];
    for (;;) {
        uint64_t t = now_ns(CLOCK_MONOTONIC);
        if (t >= deadline) return;
        if (stop_when_idle) {
            int busy = 0;
            for (int i = 0; i < nconns && !busy; i++) busy = conns[i].open && conns[i].inflight;
            if (!busy) return;
        }
        int ms = (int)((deadline - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, 512, ms > 50 ? 50 : ms);
        for (int i = 0; i < n; i++) {
            struct conn *c = &conns[evs[i].data.u32];
            if (!c->open) continue;
            if (evs[i].events & EPOLLOUT) flush(c);
            if (c->open && evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
}

static void phase(int on, double seconds) {
    sending = on;
    if (on) {
        uint64_t t = now_ns(CLOCK_MONOTONIC);
        for (int i = 0; i < nconns; i++) fill(&conns[i], t);
    }
    loop_until(now_ns(CLOCK_MONOTONIC) + (uint64_t)(seconds * 1e9), !on);
}

static uint64_t percentile(double q) {
    uint64_t want = (uint64_t)(q * (double)received), seen = 0;
    for (uint32_t i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > want) return i;
    }
    return HIST_US;
}

static void wait_stdin(int until_eof) {
    char line[64];
    while (fgets(line, sizeof line, stdin)) if (!until_eof) return;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, handshake = 1, opt;
    double duration = 3, warmup = 1, grace = 0.5;
    while ((opt = getopt(argc, argv, "a:p:c:w:d:W:g:n")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'w': per_conn = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'W': warmup = atof(optarg); break;
        case 'g': grace = atof(optarg); break;
        case 'n': handshake = 0; break;
        default: fprintf(stderr, "usage: tcpgen -p PORT [-a ADDR] [-c C] [-w W] [-d S] [-W S] [-g S] [-n]\n"); return 2;
        }
    }
    struct in_addr addr;
    if (port <= 0 || port > 65535 || nconns < 1 || nconns > MAX_CONNS || per_conn < 1 ||
        per_conn * 1024 > TX_BUF || inet_pton(AF_INET, host, &addr) != 1 ||
        (ntohl(addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "tcpgen: bad arguments (a port, 1-%d connections, a 127.x address)\n", MAX_CONNS);
        return 2;
    }
    srand((unsigned)(now_ns(CLOCK_REALTIME) ^ (uint64_t)getpid()));
    run_tag = (unsigned)rand();
    ring = calloc(RING_SIZE, sizeof *ring);
    hist = calloc(HIST_US + 1, sizeof *hist);
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!ring || !hist || !conns) die("calloc");
    epfd = epoll_create1(0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = addr};
    for (int i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0) die("socket");
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in local;
        socklen_t ll = sizeof local;
        getsockname(c->fd, (struct sockaddr *)&local, &ll);
        if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
        c->rx = malloc(RX_BUF);
        c->tx = malloc(TX_BUF);
        if (!c->rx || !c->tx) die("malloc");
        c->window = per_conn;
        c->open = 1;
        build_request(c, ntohs(local.sin_port), host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    if (warmup > 0) { phase(1, warmup); phase(0, 5); }
    if (handshake) { printf("warm\n"); fflush(stdout); wait_stdin(0); }
    counting = 1;
    uint64_t cpu0 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t0 = now_ns(CLOCK_MONOTONIC);
    uint64_t sent0 = sent;
    phase(1, duration);
    phase(0, grace);
    uint64_t cpu1 = now_ns(CLOCK_PROCESS_CPUTIME_ID), t1 = now_ns(CLOCK_MONOTONIC);
    uint64_t nsent = sent - sent0, lost = nsent - received;
    int open = 0;
    for (int i = 0; i < nconns; i++) open += conns[i].open;
    printf("{\"connections\": %d, \"open_at_end\": %d, \"inflight_per_conn\": %d, "
           "\"sent\": %" PRIu64 ", \"received\": %" PRIu64 ", \"received_in_window\": %" PRIu64
           ", \"rate\": %.1f, \"lost\": %" PRIu64 ", \"loss_pct\": %.4f, \"provisional\": %" PRIu64
           ", \"unmatched\": %" PRIu64 ", \"closed\": %" PRIu64 ", \"p50_us\": %" PRIu64
           ", \"p99_us\": %" PRIu64 ", \"p999_us\": %" PRIu64 ", \"max_us\": %.1f"
           ", \"cpu_s\": %.6f, \"elapsed_s\": %.6f}\n",
           nconns, open, per_conn, nsent, received, received_in_window,
           (double)received_in_window / duration, lost, nsent ? 100.0 * (double)lost / (double)nsent : 0.0,
           provisional, unmatched, closed_by_peer, percentile(0.5), percentile(0.99),
           percentile(0.999), (double)lat_max_ns / 1000.0, (double)(cpu1 - cpu0) / 1e9,
           (double)(t1 - t0) / 1e9);
    fflush(stdout);
    if (handshake) wait_stdin(1);
    for (int i = 0; i < nconns; i++) close_conn(&conns[i]);
    return 0;
}
