/* disco-mark begin|end NAME: marks the start or end of a workload's timed
 * region. It executes the ccNUMA plugin's region-of-interest marker
 * (HINT #0x7a / #0x7b, a no-op on hardware; see bench/numa-sim) and prints
 * DISCO-ROI-BEGIN/END NAME uptime=SECONDS on stdout, so a harness can
 * time the region in simulated time (plugin) or guest time (uptime).
 * Compiled in the guest by lib.sh (the image has gcc; the host has no
 * arm64 C compiler). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    double up = 0;
    FILE *f = fopen("/proc/uptime", "r");
    if (f) {
        if (fscanf(f, "%lf", &up) != 1)
            up = 0;
        fclose(f);
    }
    if (argc == 3 && strcmp(argv[1], "begin") == 0) {
        printf("DISCO-ROI-BEGIN %s uptime=%.2f\n", argv[2], up);
        fflush(stdout);
        __asm__ volatile("hint #0x7a" ::: "memory");
    } else if (argc == 3 && strcmp(argv[1], "end") == 0) {
        __asm__ volatile("hint #0x7b" ::: "memory");
        printf("DISCO-ROI-END %s uptime=%.2f\n", argv[2], up);
    } else {
        fprintf(stderr, "usage: disco-mark begin|end NAME\n");
        return 2;
    }
    return 0;
}
