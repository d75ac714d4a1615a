/* The EL0 half of the fault campaign (`cargo xtask faults`, issue 16 item
 * 4), cross-compiled statically on the host for the attacker's busybox
 * initramfs. Guest-physical accesses go through /dev/mem; an access the
 * monitor refuses is an external abort, which Linux delivers as SIGBUS and
 * this program survives (siglongjmp).
 *
 * fault-user wild SEED COUNT
 *   COUNT loads or stores (1, 2, 4 or 8 bytes, random values) at random
 *   pages below 2^48 outside System RAM (/proc/iomem): beyond the IPA
 *   size, in holes, and sometimes in the emulated devices' windows.
 *
 * Prints `USER kind=wild accesses=N faulted=F refused=R` (R: pages
 * /dev/mem would not map). The devices' registers are the module's `mmio`
 * kind: /dev/mem refuses regions a driver holds.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ULL
#define MAX_RANGES 64

struct range { uint64_t lo, hi; }; /* inclusive */

static struct range ram[MAX_RANGES];
static int nram;
static sigjmp_buf jump;
static uint64_t rng;

static uint64_t next(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
}

static void on_fault(int sig)
{
    (void)sig;
    siglongjmp(jump, 1);
}

static void read_ram(void)
{
    FILE *f = fopen("/proc/iomem", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        if (nram < MAX_RANGES && line[0] != ' ' && strstr(line, "System RAM") &&
            sscanf(line, "%llx-%llx", &lo, &hi) == 2)
            ram[nram++] = (struct range){ lo, hi };
    }
    if (f)
        fclose(f);
}

static int in_ram(uint64_t a)
{
    for (int i = 0; i < nram; i++)
        if (a >= ram[i].lo && a <= ram[i].hi)
            return 1;
    return 0;
}

/* One access of a random width at `addr`: 0 done, 1 faulted, 2 refused. */
static int access_at(int fd, uint64_t addr, int write)
{
    uint64_t base = addr & ~(PAGE - 1), off = addr & (PAGE - 1);
    volatile uint8_t *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)base);
    if (p == MAP_FAILED)
        return 2;
    int width = 1 << (next() % 4), faulted = 0;
    off &= ~(uint64_t)(width - 1);
    uint64_t v = next();
    if (sigsetjmp(jump, 1) == 0) {
        switch (width) {
        case 1: if (write) *(volatile uint8_t *)(p + off) = v; else v = *(volatile uint8_t *)(p + off); break;
        case 2: if (write) *(volatile uint16_t *)(p + off) = v; else v = *(volatile uint16_t *)(p + off); break;
        case 4: if (write) *(volatile uint32_t *)(p + off) = v; else v = *(volatile uint32_t *)(p + off); break;
        default: if (write) *(volatile uint64_t *)(p + off) = v; else v = *(volatile uint64_t *)(p + off); break;
        }
    } else {
        faulted = 1;
    }
    munmap((void *)p, PAGE);
    return faulted;
}

static int open_mem(void)
{
    int fd = open("/dev/mem", O_RDWR | O_SYNC);
    if (fd < 0) {
        perror("fault-user: /dev/mem");
        exit(2);
    }
    struct sigaction sa = { .sa_handler = on_fault };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 4 || strcmp(argv[1], "wild")) {
        fprintf(stderr, "usage: fault-user wild SEED COUNT\n");
        return 2;
    }
    rng = strtoull(argv[2], NULL, 0) * 0x9e3779b97f4a7c15ULL + 1;
    long count = atol(argv[3]);
    read_ram();
    int fd = open_mem();
    long outcome[3] = { 0 }, done = 0;
    while (done < count) {
        uint64_t a = next() & ((1ULL << 48) - 1);
        if (next() % 4 == 0)
            a &= (1ULL << 32) - 1; /* below 4 GiB: the device windows' neighbourhood */
        if (in_ram(a))
            continue;
        outcome[access_at(fd, a, next() & 1)]++;
        done++;
    }
    printf("USER kind=wild accesses=%ld faulted=%ld refused=%ld\n", done, outcome[1], outcome[2]);
    return 0;
}
