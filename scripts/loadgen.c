/*
 * loadgen.c - a UDP SIP load generator for loopback benchmarks of stateless servers.
 *
 * Sends OPTIONS or INVITE requests from N source sockets to one loopback target and matches
 * each final response (status >= 200) to its request by the sequence number encoded in the
 * Call-ID. Sends and receives in batches (sendmmsg/recvmmsg). One thread, one core.
 *
 *   closed loop  -w W   W requests in flight in total, split over the sockets; each socket keeps
 *                       its own window full: every final response (or timeout) frees a slot
 *                       and a new request goes out on that socket.
 *   open loop    -r R   R requests per second on a fixed schedule (token i is due at t0 + i/R),
 *                       whatever the server does; requests still unanswered after the grace
 *                       period are lost.
 *
 * Options:
 *   -a ADDR    target IPv4 address (default 127.0.0.1); anything outside 127.0.0.0/8 is refused
 *   -p PORT    target UDP port (required)
 *   -m METHOD  OPTIONS (default) or INVITE (with an SDP body)
 *   -S N       source sockets (default 8, at most 256)
 *   -w W       closed loop with W requests in flight (default 64 if -r is not given)
 *   -r R       open loop at R requests/s
 *   -d SEC     how long requests are sent (default 3)
 *   -g SEC     grace period after the last request for late responses (default 0.5)
 *   -t SEC     closed loop: a request unanswered this long is lost and replaced (default 1)
 *   -b N       batch size for sendmmsg/recvmmsg (default 32, at most 256)
 *   -U         latency from user-space CLOCK_MONOTONIC at recvmmsg return instead of the
 *              kernel's receive timestamp (SO_TIMESTAMPNS, the default)
 *
 * Latency is from the clock read just before the sendmmsg() that carried the request to the
 * kernel's receive timestamp of the final response (or the clock after recvmmsg() with -U),
 * in a histogram of 1 us buckets up to 1 s.
 *
 * Output: one JSON line on stdout with sent, received (matched final responses),
 * received_in_window (those that arrived before sending stopped), rate (received_in_window /
 * duration), loss (% of sent never answered), p50/p99/p999/max latency (us), provisional
 * responses, unmatched datagrams (duplicates, late or foreign), send errors, and this
 * process's own CPU time (cpu_s) and wall time (elapsed_s).
 *
 *   gcc -O2 -Wall -Wextra -o loadgen loadgen.c
 *   ./loadgen -p 5060 -w 64 -d 3           # closed loop
 *   ./loadgen -p 5060 -r 20000 -d 3        # open loop
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SOCKS 256
#define MAX_BATCH 256
#define RX_BUF 4096
#define REQ_MAX 2048
#define RING_BITS 20
#define RING_SIZE (1u << RING_BITS)
#define RING_MASK (RING_SIZE - 1)
#define HIST_US 1000000 /* 1 us buckets up to 1 s; one more bucket for everything above */
#define SEQ_HEX 16

struct entry {          /* one sent request, at ring[seq & RING_MASK] */
    uint64_t t_ns;      /* send time on the latency clock */
    uint32_t seq_lo;    /* low 32 bits of its sequence number, to detect reuse of the slot */
    uint16_t sock;      /* which source socket sent it */
    uint8_t live;       /* 1 while unanswered */
};

struct src {            /* one source socket */
    int fd;
    int local_port;
    int window;         /* closed loop: its share of the requests in flight */
    int inflight;       /* requests sent and not yet answered or expired */
    int refill;         /* closed loop: slots freed and not yet refilled */
    char tmpl[REQ_MAX]; /* its request, with the two sequence fields to patch */
    int len, off_branch, off_callid;
};

static struct entry *ring;
static uint32_t *hist;
static struct src socks[MAX_SOCKS];
static int nsocks = 8, batch = 32, kernel_ts = 1, closed_loop = 1;
static uint32_t run_tag;
static uint64_t next_seq = 1, tail_seq = 1;
static uint64_t sent, received, received_in_window, provisional, unmatched, send_errors;
static uint64_t expired, lat_sum_ns, lat_max_ns, lat_count;
static int in_send_phase = 1;

/* per-batch buffers, shared by all sockets (one socket is served at a time) */
static struct mmsghdr tx_msgs[MAX_BATCH], rx_msgs[MAX_BATCH];
static struct iovec tx_iov[MAX_BATCH], rx_iov[MAX_BATCH];
static char tx_buf[MAX_BATCH][REQ_MAX];
static char rx_buf[MAX_BATCH][RX_BUF];
static char rx_ctl[MAX_BATCH][CMSG_SPACE(sizeof(struct timespec))];

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void usage(const char *msg) {
    fprintf(stderr, "loadgen: %s\nusage: loadgen -p PORT [-a 127.0.0.1] [-m OPTIONS|INVITE] "
                    "[-S socks] [-w inflight | -r rate] [-d sec] [-g sec] [-t sec] [-b batch] "
                    "[-U]\n", msg);
    exit(2);
}

static inline uint64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
/* the latency clock: CLOCK_REALTIME matches the kernel's SO_TIMESTAMPNS stamps */
static inline uint64_t lat_ns(void) { return clock_ns(kernel_ts ? CLOCK_REALTIME : CLOCK_MONOTONIC); }

static const char HEXD[] = "0123456789abcdef";

static inline void put_hex(char *p, uint64_t v) {
    for (int i = SEQ_HEX - 1; i >= 0; i--) {
        p[i] = HEXD[v & 15];
        v >>= 4;
    }
}

static void build_template(struct src *s, const char *method, const char *host, int port) {
    char branch_mark[SEQ_HEX + 1], callid_mark[SEQ_HEX + 1];
    memset(branch_mark, 'B', SEQ_HEX);
    memset(callid_mark, 'C', SEQ_HEX);
    branch_mark[SEQ_HEX] = callid_mark[SEQ_HEX] = 0;
    int invite = strcmp(method, "INVITE") == 0;
    char sdp[512] = "";
    if (invite)
        snprintf(sdp, sizeof sdp,
                 "v=0\r\no=loadgen 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                 "t=0 0\r\nm=audio %d RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
                 "a=rtpmap:8 PCMA/8000\r\n", 20000 + (s->local_port % 20000));
    int n = snprintf(
        s->tmpl, sizeof s->tmpl,
        "%s sip:bench@%s:%d SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:loadgen@127.0.0.1:%d>;tag=%08x\r\n"
        "To: <sip:bench@%s:%d>\r\n"
        "Call-ID: %s-%08x@127.0.0.1\r\n"
        "CSeq: 1 %s\r\n"
        "Contact: <sip:loadgen@127.0.0.1:%d>\r\n"
        "%s"
        "User-Agent: loadgen\r\n"
        "Content-Length: %zu\r\n\r\n%s",
        method, host, port, s->local_port, branch_mark, s->local_port, run_tag, host, port,
        callid_mark, run_tag, method, s->local_port,
        invite ? "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nContent-Type: application/sdp\r\n"
               : "Accept: application/sdp\r\n",
        strlen(sdp), sdp);
    if (n <= 0 || n >= (int)sizeof s->tmpl) {
        fprintf(stderr, "loadgen: request template too long\n");
        exit(2);
    }
    s->len = n;
    s->off_branch = (int)(strstr(s->tmpl, branch_mark) - s->tmpl);
    s->off_callid = (int)(strstr(s->tmpl, callid_mark) - s->tmpl);
}

/* Send up to n new requests on socket si; returns how many the kernel took. */
static int send_requests(int si, int n) {
    struct src *s = &socks[si];
    int total = 0;
    while (n > 0) {
        int k = n < batch ? n : batch;
        uint64_t first = next_seq;
        for (int i = 0; i < k; i++) {
            uint64_t seq = first + (uint64_t)i;
            memcpy(tx_buf[i], s->tmpl, (size_t)s->len);
            put_hex(tx_buf[i] + s->off_branch, seq);
            put_hex(tx_buf[i] + s->off_callid, seq);
            tx_iov[i].iov_base = tx_buf[i];
            tx_iov[i].iov_len = (size_t)s->len;
            memset(&tx_msgs[i].msg_hdr, 0, sizeof tx_msgs[i].msg_hdr);
            tx_msgs[i].msg_hdr.msg_iov = &tx_iov[i];
            tx_msgs[i].msg_hdr.msg_iovlen = 1;
        }
        uint64_t t = lat_ns();
        int r = sendmmsg(s->fd, tx_msgs, (unsigned)k, MSG_DONTWAIT);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS &&
                errno != ECONNREFUSED)
                die("sendmmsg");
            r = 0;
        }
        for (int i = 0; i < r; i++) {
            uint64_t seq = first + (uint64_t)i;
            struct entry *e = &ring[seq & RING_MASK];
            if (e->live) { /* the ring wrapped onto an unanswered request: it stays lost */
                e->live = 0;
                socks[e->sock].inflight--;
            }
            e->t_ns = t;
            e->seq_lo = (uint32_t)seq;
            e->sock = (uint16_t)si;
            e->live = 1;
        }
        next_seq += (uint64_t)r;
        sent += (uint64_t)r;
        s->inflight += r;
        total += r;
        if (r < k) { /* the kernel refused the rest of the batch: try again later */
            send_errors += (uint64_t)(k - r);
            break;
        }
        n -= k;
    }
    return total;
}

static inline int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Finds the Call-ID header value (long or compact form) in a response; NULL if absent. */
static const char *find_callid(const char *p, const char *end) {
    const char *q = memmem(p, (size_t)(end - p), "\nCall-ID:", 9);
    if (q) return q + 9;
    for (q = p; q < end; q++) { /* slow path: any case, compact form, space before colon */
        if (*q != '\n') continue;
        const char *h = q + 1, *v = NULL;
        if (end - h >= 7 && strncasecmp(h, "call-id", 7) == 0) v = h + 7;
        else if (end - h >= 1 && lower(*h) == 'i') v = h + 1;
        if (!v) continue;
        while (v < end && (*v == ' ' || *v == '\t')) v++;
        if (v < end && *v == ':') return v + 1;
    }
    return NULL;
}

/* Parses "<16 hex>-<8 hex tag>" from a Call-ID value; returns the sequence number or 0. */
static uint64_t parse_seq(const char *v, const char *end) {
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    if (end - v < SEQ_HEX + 1 + 8) return 0;
    uint64_t seq = 0;
    for (int i = 0; i < SEQ_HEX; i++) {
        int c = v[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        seq = (seq << 4) | (uint64_t)d;
    }
    if (v[SEQ_HEX] != '-') return 0;
    uint32_t tag = 0;
    for (int i = 0; i < 8; i++) {
        int c = v[SEQ_HEX + 1 + i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        tag = (tag << 4) | (uint32_t)d;
    }
    return tag == run_tag ? seq : 0;
}

static void on_response(const char *p, size_t len, uint64_t t_rx) {
    const char *end = p + len;
    if (len < 12 || memcmp(p, "SIP/2.0 ", 8) != 0 || p[8] < '1' || p[8] > '6') {
        unmatched++;
        return;
    }
    if (p[8] == '1') {
        provisional++;
        return;
    }
    const char *v = find_callid(p, end);
    uint64_t seq = v ? parse_seq(v, end) : 0;
    struct entry *e = seq ? &ring[seq & RING_MASK] : NULL;
    if (!e || !e->live || e->seq_lo != (uint32_t)seq || seq >= next_seq) {
        unmatched++;
        return;
    }
    e->live = 0;
    struct src *s = &socks[e->sock];
    s->inflight--;
    received++;
    if (in_send_phase) {
        received_in_window++;
        if (closed_loop) s->refill++;
    }
    uint64_t lat = t_rx > e->t_ns ? t_rx - e->t_ns : 0;
    uint64_t us = lat / 1000;
    hist[us < HIST_US ? us : HIST_US]++;
    lat_sum_ns += lat;
    lat_count++;
    if (lat > lat_max_ns) lat_max_ns = lat;
}

/* Reads everything queued on socket si (bounded per call); returns datagrams read. */
static int drain(int si) {
    int fd = socks[si].fd, got = 0;
    for (int round = 0; round < 8; round++) {
        for (int i = 0; i < batch; i++) {
            rx_iov[i].iov_base = rx_buf[i];
            rx_iov[i].iov_len = RX_BUF;
            memset(&rx_msgs[i].msg_hdr, 0, sizeof rx_msgs[i].msg_hdr);
            rx_msgs[i].msg_hdr.msg_iov = &rx_iov[i];
            rx_msgs[i].msg_hdr.msg_iovlen = 1;
            if (kernel_ts) {
                rx_msgs[i].msg_hdr.msg_control = rx_ctl[i];
                rx_msgs[i].msg_hdr.msg_controllen = sizeof rx_ctl[i];
            }
        }
        int r = recvmmsg(fd, rx_msgs, (unsigned)batch, MSG_DONTWAIT, NULL);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNREFUSED) break;
            if (errno == EINTR) continue;
            die("recvmmsg");
        }
        uint64_t t_user = lat_ns();
        for (int i = 0; i < r; i++) {
            uint64_t t = t_user;
            if (kernel_ts) {
                struct msghdr *h = &rx_msgs[i].msg_hdr;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
                    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                        struct timespec ts;
                        memcpy(&ts, CMSG_DATA(c), sizeof ts);
                        t = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
                    }
                }
            }
            on_response(rx_buf[i], rx_msgs[i].msg_len, t);
        }
        got += r;
        if (r < batch) break;
    }
    return got;
}

/* Closed loop: requests unanswered for longer than the timeout are lost; free their slots. */
static void expire(uint64_t timeout_ns) {
    uint64_t now = lat_ns();
    while (tail_seq < next_seq) {
        struct entry *e = &ring[tail_seq & RING_MASK];
        if (!e->live || e->seq_lo != (uint32_t)tail_seq) {
            tail_seq++;
            continue;
        }
        if (now - e->t_ns < timeout_ns) break;
        e->live = 0;
        expired++;
        socks[e->sock].inflight--;
        if (in_send_phase) socks[e->sock].refill++;
        tail_seq++;
    }
}

static uint64_t percentile(double q) {
    if (lat_count == 0) return 0;
    uint64_t want = (uint64_t)(q * (double)lat_count);
    if (want >= lat_count) want = lat_count - 1;
    uint64_t acc = 0;
    for (uint64_t i = 0; i <= HIST_US; i++) {
        acc += hist[i];
        if (acc > want) return i;
    }
    return HIST_US;
}

static uint32_t parse_ipv4_loopback(const char *host) {
    struct in_addr a;
    if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
    if (inet_pton(AF_INET, host, &a) != 1) usage("target must be an IPv4 loopback address");
    if ((ntohl(a.s_addr) >> 24) != 127) {
        fprintf(stderr, "loadgen: refusing non-loopback target %s\n", host);
        exit(2);
    }
    return a.s_addr;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *method = "OPTIONS";
    int port = 0, window = -1;
    double rate = 0, duration = 3, grace = 0.5, timeout = 1.0;
    int opt;
    while ((opt = getopt(argc, argv, "a:p:m:S:w:r:d:g:t:b:U")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'm': method = optarg; break;
        case 'S': nsocks = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'g': grace = atof(optarg); break;
        case 't': timeout = atof(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 'U': kernel_ts = 0; break;
        default: usage("unknown option");
        }
    }
    if (port <= 0 || port > 65535) usage("-p PORT is required");
    if (strcmp(method, "OPTIONS") != 0 && strcmp(method, "INVITE") != 0)
        usage("-m must be OPTIONS or INVITE");
    if (nsocks < 1 || nsocks > MAX_SOCKS) usage("-S out of range");
    if (batch < 1 || batch > MAX_BATCH) usage("-b out of range");
    if (duration <= 0 || duration > 3600 || grace < 0 || grace > 60 || timeout <= 0)
        usage("bad -d/-g/-t");
    if (rate > 0 && window > 0) usage("-w and -r exclude each other");
    closed_loop = rate <= 0;
    if (closed_loop && window <= 0) window = 64;
    uint32_t target = parse_ipv4_loopback(host);

    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* sleep to the microsecond, not 50 us late */
    ring = calloc(RING_SIZE, sizeof *ring);
    hist = calloc(HIST_US + 1, sizeof *hist);
    if (!ring || !hist) die("calloc");
    run_tag = (uint32_t)getpid() * 2654435761u ^ (uint32_t)mono_ns();

    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    dst.sin_addr.s_addr = target;
    struct pollfd pfd[MAX_SOCKS];
    for (int i = 0; i < nsocks; i++) {
        struct src *s = &socks[i];
        s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (s->fd < 0) die("socket");
        int size = 4 << 20, one = 1;
        if (setsockopt(s->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
            setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        if (setsockopt(s->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
            setsockopt(s->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        if (kernel_ts && setsockopt(s->fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0)
            die("SO_TIMESTAMPNS");
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(s->fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind");
        if (connect(s->fd, (struct sockaddr *)&dst, sizeof dst) < 0) die("connect");
        socklen_t sl = sizeof src;
        if (getsockname(s->fd, (struct sockaddr *)&src, &sl) < 0) die("getsockname");
        s->local_port = ntohs(src.sin_port);
        s->window = closed_loop ? window / nsocks + (i < window % nsocks) : 0;
        build_template(s, method, host, port);
        pfd[i].fd = s->fd;
        pfd[i].events = POLLIN;
    }

    const uint64_t dur_ns = (uint64_t)(duration * 1e9), grace_ns = (uint64_t)(grace * 1e9);
    const uint64_t timeout_ns = (uint64_t)(timeout * 1e9);
    const uint64_t cpu0 = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
    const uint64_t t0 = mono_ns(), t_end = t0 + dur_ns, t_stop = t_end + grace_ns;
    uint64_t scheduled = 0, next_expire = t0 + 10000000ull;
    int rr = 0; /* open loop: round-robin over the sockets */

    if (closed_loop)
        for (int i = 0; i < nsocks; i++) socks[i].refill = socks[i].window;

    for (;;) {
        uint64_t now = mono_ns();
        if (in_send_phase && now >= t_end) in_send_phase = 0;
        if (!in_send_phase) {
            uint64_t open = 0;
            for (int i = 0; i < nsocks; i++) open += (uint64_t)socks[i].inflight;
            if (now >= t_stop || open == 0) break;
        }
        /* send what is due */
        if (in_send_phase) {
            if (closed_loop) {
                for (int i = 0; i < nsocks; i++) {
                    int n = socks[i].refill;
                    if (n > 0) socks[i].refill -= send_requests(i, n);
                }
            } else {
                uint64_t due = (uint64_t)((double)(now - t0) * rate / 1e9) + 1;
                uint64_t cap = (uint64_t)batch * (uint64_t)nsocks; /* then receive again */
                if (due > scheduled) {
                    uint64_t n = due - scheduled;
                    if (n > cap) n = cap;
                    scheduled += n;
                    /* spread over the sockets in chunks, round-robin */
                    while (n > 0) {
                        uint64_t k = n < (uint64_t)batch ? n : (uint64_t)batch;
                        /* a refused request is not retried: the schedule moves on */
                        send_requests(rr, (int)k);
                        rr = (rr + 1) % nsocks;
                        n -= k;
                    }
                }
            }
        }
        if (closed_loop && now >= next_expire) {
            expire(timeout_ns);
            next_expire = now + 10000000ull;
        }
        /* wait for responses, or until the next request is due */
        uint64_t wake = in_send_phase ? t_end : t_stop;
        if (closed_loop) {
            if (next_expire < wake) wake = next_expire;
            for (int i = 0; in_send_phase && i < nsocks; i++)
                if (socks[i].refill > 0 && now + 100000ull < wake) wake = now + 100000ull;
        } else if (in_send_phase) {
            uint64_t next_due = t0 + (uint64_t)((double)scheduled * 1e9 / rate);
            if (next_due < wake) wake = next_due;
        }
        now = mono_ns();
        struct timespec ts = {0, 0};
        if (wake > now) {
            uint64_t d = wake - now;
            ts.tv_sec = (time_t)(d / 1000000000ull);
            ts.tv_nsec = (long)(d % 1000000000ull);
        }
        int r = ppoll(pfd, (nfds_t)nsocks, &ts, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;
            die("ppoll");
        }
        for (int i = 0; r > 0 && i < nsocks; i++)
            if (pfd[i].revents & (POLLIN | POLLERR)) drain(i);
    }
    const uint64_t t1 = mono_ns();
    const double cpu_s = (double)(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0) / 1e9;
    const double elapsed = (double)(t1 - t0) / 1e9;
    const uint64_t lost = sent - received;
    printf("{\"mode\":\"%s\",\"method\":\"%s\",\"sockets\":%d,\"batch\":%d,\"inflight\":%d,"
           "\"rate_target\":%.0f,\"duration\":%.3f,\"grace\":%.3f,\"sent\":%" PRIu64
           ",\"received\":%" PRIu64 ",\"received_in_window\":%" PRIu64 ",\"rate\":%.1f,"
           "\"send_rate\":%.1f,\"lost\":%" PRIu64 ",\"expired\":%" PRIu64 ",\"loss_pct\":%.4f,"
           "\"provisional\":%" PRIu64 ",\"unmatched\":%" PRIu64 ",\"send_errors\":%" PRIu64
           ",\"p50_us\":%" PRIu64 ",\"p99_us\":%" PRIu64 ",\"p999_us\":%" PRIu64
           ",\"max_us\":%.1f,\"mean_us\":%.1f,\"latency_clock\":\"%s\",\"cpu_s\":%.4f,"
           "\"elapsed_s\":%.4f}\n",
           closed_loop ? "closed" : "open", method, nsocks, batch, closed_loop ? window : 0,
           rate, duration, grace, sent, received, received_in_window,
           (double)received_in_window / duration, (double)sent / duration, lost, expired,
           sent ? 100.0 * (double)lost / (double)sent : 0.0, provisional, unmatched,
           send_errors, percentile(0.50), percentile(0.99), percentile(0.999),
           (double)lat_max_ns / 1e3, lat_count ? (double)lat_sum_ns / (double)lat_count / 1e3 : 0,
           kernel_ts ? "kernel" : "user", cpu_s, elapsed);
    return 0;
}
