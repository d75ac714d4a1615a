/* The isolation sweep of `cargo xtask test` (isolation-sweep; issue 16,
 * item 6), compiled in the guest like disco-mark.c.
 *
 * ipa-probe sweep BITS [LO-HI ...]
 *   Reads one 64-bit word at every 2 MiB of guest-physical space below
 *   2^BITS (the monitor's IPA size), and at every 2^(BITS-4) bytes from
 *   there up to 2^48 (what the CPU's PARange lets the guest address),
 *   through /dev/mem, skipping System RAM (from /proc/iomem) and the
 *   ranges LO-HI given (hex, the emulated devices). Each read must take
 *   an external abort, which Linux turns into SIGBUS. A read that does
 *   not fault is printed, and every word of its page is checked for the
 *   victim's marker. Prints one summary line:
 *   PROBE probed=N aborted=A read=R marker=M unmappable=U
 *
 * ipa-probe fill MIB PORT SECONDS
 *   The victim: fills MIB MiB with the marker, then re-checks it every
 *   second until a UDP datagram arrives on PORT (the attacker's "done")
 *   or SECONDS pass, and prints
 *   FILL mib=MIB rounds=K intact=yes|no stopped=datagram|timeout
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* "DISCOVIC" as a little-endian word: only the victim writes it. */
#define MARKER 0x4349564f43534944ULL
#define STEP (2ULL << 20)
#define PAGE 4096ULL
#define MAX_RANGES 64

struct range { uint64_t lo, hi; }; /* [lo, hi] inclusive, as /proc/iomem */

static struct range skip[MAX_RANGES];
static int nskip;
static sigjmp_buf jump;

static void on_bus(int sig)
{
    (void)sig;
    siglongjmp(jump, 1);
}

static void add_skip(uint64_t lo, uint64_t hi)
{
    if (nskip < MAX_RANGES)
        skip[nskip++] = (struct range){ lo, hi };
}

/* System RAM ranges of /proc/iomem (top level: no leading spaces). */
static void skip_ram(void)
{
    FILE *f = fopen("/proc/iomem", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        if (line[0] != ' ' && strstr(line, "System RAM") && sscanf(line, "%llx-%llx", &lo, &hi) == 2)
            add_skip(lo, hi);
    }
    if (f)
        fclose(f);
}

static int skipped(uint64_t a)
{
    for (int i = 0; i < nskip; i++)
        if (a >= skip[i].lo && a <= skip[i].hi)
            return 1;
    return 0;
}

static int sweep(int bits, int nranges, char **ranges)
{
    for (int i = 0; i < nranges; i++) {
        unsigned long long lo, hi;
        if (sscanf(ranges[i], "%llx-%llx", &lo, &hi) != 2) {
            fprintf(stderr, "ipa-probe: bad range %s\n", ranges[i]);
            return 2;
        }
        add_skip(lo, hi);
    }
    skip_ram();
    int fd = open("/dev/mem", O_RDONLY | O_SYNC);
    if (fd < 0) {
        perror("ipa-probe: /dev/mem");
        return 2;
    }
    struct sigaction sa = { .sa_handler = on_bus };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    uint64_t limit = 1ULL << bits, top = 1ULL << 48;
    unsigned long probed = 0, aborted = 0, readable = 0, marker = 0, unmappable = 0, shown = 0;
    for (uint64_t a = 0; a < top; a += a < limit ? STEP : limit >> 4) {
        if (skipped(a))
            continue;
        probed++;
        volatile uint64_t *p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, fd, (off_t)a);
        if (p == MAP_FAILED) {
            unmappable++;
            continue;
        }
        if (sigsetjmp(jump, 1) == 0) {
            uint64_t v = p[0];
            readable++;
            int has = 0;
            for (unsigned w = 0; w < PAGE / 8; w++)
                has |= p[w] == MARKER;
            marker += has;
            if (shown++ < 16)
                printf("PROBE-READ %#" PRIx64 " = %#" PRIx64 "%s\n", a, v, has ? " (marker)" : "");
        } else {
            aborted++;
        }
        munmap((void *)p, PAGE);
    }
    printf("PROBE probed=%lu aborted=%lu read=%lu marker=%lu unmappable=%lu\n", probed, aborted, readable, marker,
           unmappable);
    return 0;
}

static int fill(long mib, int port, long seconds)
{
    int sock = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = INADDR_ANY };
    if (sock < 0 || bind(sock, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("ipa-probe: udp");
        return 2;
    }
    size_t words = (size_t)mib << 17;
    uint64_t *m = malloc(words * 8);
    if (!m) {
        perror("ipa-probe: malloc");
        return 2;
    }
    for (size_t i = 0; i < words; i++)
        m[i] = MARKER;
    printf("FILL-READY mib=%ld\n", mib);
    fflush(stdout);
    time_t end = time(NULL) + seconds;
    long rounds = 0;
    int intact = 1, datagram = 0;
    while (!datagram && time(NULL) < end) {
        for (size_t i = 0; i < words; i++)
            intact &= m[i] == MARKER;
        rounds++;
        fd_set r;
        FD_ZERO(&r);
        FD_SET(sock, &r);
        struct timeval tv = { .tv_sec = 1 };
        datagram = select(sock + 1, &r, NULL, NULL, &tv) > 0;
    }
    printf("FILL mib=%ld rounds=%ld intact=%s stopped=%s\n", mib, rounds, intact ? "yes" : "no",
           datagram ? "datagram" : "timeout");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "sweep") == 0)
        return sweep(atoi(argv[2]), argc - 3, argv + 3);
    if (argc == 5 && strcmp(argv[1], "fill") == 0)
        return fill(atol(argv[2]), atoi(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: ipa-probe sweep BITS [LO-HI ...] | fill MIB PORT SECONDS\n");
    return 2;
}
