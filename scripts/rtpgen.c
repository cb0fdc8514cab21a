/*
 * rtpgen.c - an RTP stream generator for loopback benchmarks of RTP echo servers.
 *
 * Opens N UDP sockets on 127.0.0.1 (one per stream, each its own source port), prints their
 * ports, optionally waits for "go PORT" on stdin (so the caller can first set up one call per
 * stream, naming each port in its SDP offer, and learn the target port from the answers),
 * then sends every stream's packets on a fixed
 * schedule to one target (open loop: packet k of all streams is due at t0 + k / (N * R),
 * streams taking turns, so each stream sends R packets a second, evenly spaced) and counts
 * the echoes that come back to each socket. One thread, one core; epoll over the sockets,
 * woken at least every millisecond to send what is due.
 *
 * Each packet: a 12-byte RTP header (version 2, payload type -t, a sequence number and a
 * timestamp advancing by 160 per packet, SSRC 0x52000000 + stream), then a payload carrying
 * a magic word, the stream number, a "measured" flag and the send time (CLOCK_MONOTONIC ns),
 * padded with 0xFF (G.711 silence) to -s bytes. The echo server may rewrite the header (the
 * SSRC); the payload is what is matched.
 *
 * Phases: -w SEC warm-up (sent, echoes not counted), -d SEC measured (packets flagged), then
 * -g SEC grace for the last echoes (nothing sent). "measure" is printed on stdout when the
 * measured phase starts (the caller samples the server's CPU then), and one JSON line when
 * the grace period ends.
 *
 * Options:
 *   -a ADDR  target IPv4 address (default 127.0.0.1); anything outside 127.0.0.0/8 is refused
 *   -p PORT  target UDP port (required)
 *   -n N     streams (default 500, at most 4000)
 *   -r R     packets per second per stream (default 50)
 *   -s B     packet size in bytes, RTP header included (default 172: G.711, 20 ms)
 *   -t PT    RTP payload type (default 0, PCMU)
 *   -w SEC   warm-up seconds (default 1)
 *   -d SEC   measured seconds (default 5)
 *   -g SEC   grace seconds (default 0.5)
 *   -G       print "ports P1 P2 ..." and wait for "go [PORT]" on stdin before sending (PORT,
 *            if given, replaces -p; then -p may be left out)
 *
 * Output (last line): sent, received (echoes of measured packets), lost, loss_pct, late
 * (echoes of warm-up packets), foreign (datagrams that are not our echoes), send_errors,
 * p50_us/p99_us/max_us (send to receive, user-space clocks), behind_max_us (how late the
 * generator ever was against its schedule: large means it could not keep up), stall_max_us
 * (the longest gap between two turns of its loop: a long one means it was not scheduled,
 * e.g. a busy neighbour; echoes of packets sent just before a stall longer than the grace
 * period count as lost), cpu_s (this
 * process, measured phase and grace), window_s (-d) and elapsed_s (measured phase and
 * grace, as long as it really took: the grace runs from the last packet sent).
 *
 *   cc -O2 -Wall -Wextra -o rtpgen rtpgen.c && ./rtpgen -p 6000 -n 500 -d 5
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 4000
#define MAX_SIZE 1400
#define MAGIC 0x52474e31u /* "RGN1" */
#define HIST 1000000      /* 1 us buckets up to 1 s */
#define BATCH 16

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void put32(unsigned char *p, uint32_t v) { v = htonl(v); memcpy(p, &v, 4); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return ntohl(v); }

static uint32_t hist[HIST + 1];

static double percentile(uint64_t count, double q) {
    if (count == 0) return 0;
    uint64_t want = (uint64_t)(q * (double)count), seen = 0;
    if (want >= count) want = count - 1;
    for (int i = 0; i <= HIST; i++) {
        seen += hist[i];
        if (seen > want) return i;
    }
    return HIST;
}

static void usage(void) {
    fprintf(stderr, "usage: rtpgen -p PORT [-a ADDR] [-n STREAMS] [-r PPS] [-s BYTES] [-t PT] "
                    "[-w SEC] [-d SEC] [-g SEC] [-G]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1";
    int port = 0, n = 500, size = 172, pt = 0, wait_go = 0, opt;
    double pps = 50, warm = 1, dur = 5, grace = 0.5;
    while ((opt = getopt(argc, argv, "a:p:n:r:s:t:w:d:g:G")) != -1) {
        switch (opt) {
        case 'a': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': n = atoi(optarg); break;
        case 'r': pps = atof(optarg); break;
        case 's': size = atoi(optarg); break;
        case 't': pt = atoi(optarg); break;
        case 'w': warm = atof(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'g': grace = atof(optarg); break;
        case 'G': wait_go = 1; break;
        default: usage();
        }
    }
    if ((!wait_go && port <= 0) || port < 0 || port > 65535 || n < 1 || n > MAX_STREAMS || pps <= 0 || size < 40 ||
        size > MAX_SIZE || pt < 0 || pt > 127 || warm < 0 || dur <= 0 || grace < 0)
        usage();
    struct sockaddr_in target = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &target.sin_addr) != 1 ||
        (ntohl(target.sin_addr.s_addr) >> 24) != 127) {
        fprintf(stderr, "rtpgen: %s: only 127.0.0.0/8 targets\n", addr);
        return 2;
    }
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);

    static int fds[MAX_STREAMS];
    static uint16_t seq[MAX_STREAMS];
    int ep = epoll_create1(0);
    if (ep < 0) { perror("epoll_create1"); return 1; }
    if (wait_go) fputs("ports", stdout);
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
        if (fds[i] < 0) { perror("socket"); return 1; }
        struct sockaddr_in local = {.sin_family = AF_INET};
        local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof local;
        if (bind(fds[i], (struct sockaddr *)&local, sizeof local) < 0 ||
            getsockname(fds[i], (struct sockaddr *)&local, &len) < 0) {
            perror("bind");
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) { perror("epoll_ctl"); return 1; }
        if (wait_go) printf(" %d", ntohs(local.sin_port));
    }
    if (wait_go) {
        printf("\n");
        fflush(stdout);
        char line[64];
        int go_port = 0;
        if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0) return 1;
        if (sscanf(line + 2, "%d", &go_port) == 1) {
            if (go_port <= 0 || go_port > 65535) usage();
            target.sin_port = htons((uint16_t)go_port);
        } else if (port <= 0) {
            usage();
        }
    }
    for (int i = 0; i < n; i++)
        if (connect(fds[i], (struct sockaddr *)&target, sizeof target) < 0) {
            perror("connect");
            return 1;
        }

    unsigned char pkt[MAX_SIZE];
    memset(pkt, 0xFF, sizeof pkt);
    static unsigned char in[BATCH][MAX_SIZE + 64];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    struct epoll_event evs[256];

    const double rate = pps * n;  /* packets per second over all streams */
    uint64_t t0 = now_ns() + 1000000, k = 0;
    uint64_t t_meas = t0 + (uint64_t)(warm * 1e9), t_end = t_meas + (uint64_t)(dur * 1e9);
    uint64_t t_stop = t_end + (uint64_t)(grace * 1e9);
    uint64_t sent = 0, received = 0, late = 0, foreign = 0, send_errors = 0, behind_max = 0;
    uint64_t lat_max = 0, stall_max = 0, last = 0, last_send = 0;
    const uint64_t grace_ns = (uint64_t)(grace * 1e9);
    double cpu0 = 0;
    int measuring = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= t_meas) {
            measuring = 1;
            cpu0 = cpu_s();
            printf("measure\n");
            fflush(stdout);
        }
        if (last && now - last > stall_max) stall_max = now - last;
        last = now;
        /* send what is due (all of it, even when woken late: the count stays exact) */
        for (;;) {
            uint64_t due = t0 + (uint64_t)((double)k * 1e9 / rate);
            if (due > now || due >= t_end) break;
            if (now - due > behind_max) behind_max = now - due;
            int s = (int)(k % (uint64_t)n);
            int measured = due >= t_meas;
            pkt[0] = 0x80;
            pkt[1] = (unsigned char)pt;
            pkt[2] = (unsigned char)(seq[s] >> 8);
            pkt[3] = (unsigned char)seq[s];
            put32(pkt + 4, (uint32_t)seq[s] * 160u);
            put32(pkt + 8, 0x52000000u + (uint32_t)s);
            put32(pkt + 12, MAGIC);
            put32(pkt + 16, (uint32_t)s);
            put32(pkt + 20, (uint32_t)measured);
            uint64_t ts = now_ns();
            put32(pkt + 24, (uint32_t)(ts >> 32));
            put32(pkt + 28, (uint32_t)ts);
            seq[s]++;
            last_send = ts;
            if (send(fds[s], pkt, (size_t)size, 0) != size) send_errors++;
            else if (measured) sent++;
            k++;
        }
        /* receive until the next packet is due (at most 1 ms) */
        uint64_t next = t0 + (uint64_t)((double)k * 1e9 / rate);
        int timeout = 1;
        if (next >= t_end) timeout = 1;
        else if (next <= now_ns()) timeout = 0;
        if (now >= t_stop && now_ns() - last_send >= grace_ns) break;
        int ready = epoll_wait(ep, evs, 256, timeout);
        for (int e = 0; e < ready; e++) {
            int fd = fds[evs[e].data.u32];
            for (int i = 0; i < BATCH; i++) {
                iov[i].iov_base = in[i];
                iov[i].iov_len = sizeof in[i];
                memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
                msgs[i].msg_hdr.msg_iov = &iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            int got = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (got <= 0) continue;
            uint64_t rnow = now_ns();
            for (int i = 0; i < got; i++) {
                const unsigned char *p = in[i];
                if (msgs[i].msg_len < 32 || get32(p + 12) != MAGIC) { foreign++; continue; }
                if (!get32(p + 20)) { late++; continue; }
                received++;
                uint64_t ts = ((uint64_t)get32(p + 24) << 32) | get32(p + 28);
                uint64_t us = rnow > ts ? (rnow - ts) / 1000 : 0;
                if (us > lat_max) lat_max = us;
                hist[us > HIST ? HIST : us]++;
            }
        }
    }
    double cpu = cpu_s() - cpu0, elapsed = (double)(now_ns() - t_meas) / 1e9;
    int64_t lost = (int64_t)sent - (int64_t)received;
    printf("{\"streams\": %d, \"pps_per_stream\": %g, \"rate\": %g, \"size\": %d, "
           "\"sent\": %" PRIu64 ", \"received\": %" PRIu64 ", \"lost\": %" PRId64 ", "
           "\"loss_pct\": %.4f, \"late\": %" PRIu64 ", \"foreign\": %" PRIu64 ", "
           "\"send_errors\": %" PRIu64 ", \"p50_us\": %.0f, \"p99_us\": %.0f, "
           "\"max_us\": %" PRIu64 ", \"behind_max_us\": %" PRIu64 ", "
           "\"stall_max_us\": %" PRIu64 ", \"cpu_s\": %.4f, "
           "\"window_s\": %g, \"elapsed_s\": %.4f}\n",
           n, pps, rate, size, sent, received, lost,
           sent ? 100.0 * (double)lost / (double)sent : 0.0, late, foreign, send_errors,
           percentile(received, 0.50), percentile(received, 0.99), lat_max,
           behind_max / 1000, stall_max / 1000, cpu, dur, elapsed);
    fflush(stdout);
    return 0;
}
