/* kleak-grow: a user-space leak with a known rate, for the triage tests.
 *
 *   kleak-grow KIB_PER_S [CAP_MIB]
 *
 * Prints "ready PID", then every 10 ms allocates and touches KIB_PER_S/100
 * KiB that it never frees (so its PSS grows steadily), until CAP_MIB
 * (default 256) is reached. Exits on stdin EOF. It makes no kernel
 * allocation the trace tests look for. */
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	long per_tick = atol(argv[1]) * 1024 / 100;
	long cap = (argc > 2 ? atol(argv[2]) : 256) * 1024 * 1024;
	if (per_tick <= 0 || cap <= 0)
		return 2;
	printf("ready %d\n", getpid());
	fflush(stdout);
	long total = 0;
	for (;;) {
		struct pollfd p = {0, POLLIN, 0};
		if (poll(&p, 1, 10) > 0) {
			char buf[64];
			if (read(0, buf, sizeof(buf)) <= 0)
				return 0;
		}
		if (total + per_tick > cap)
			continue;
		char *m = malloc(per_tick);
		if (!m)
			return 1;
		memset(m, 0x5a, per_tick);
		total += per_tick;
	}
}
