/* kleak-bench-malloc: a malloc-heavy workload for comparing user-space
 * leak tracers (kleak user, heaptrack, valgrind memcheck).
 *
 *   kleak-bench-malloc OPS [LEAK]
 *
 * OPS times: free one of 1024 live blocks, malloc a new one of 16-4111
 * bytes through one of three call paths (so there are a few stacks), plus
 * every 64th op a calloc and every 256th a realloc. LEAK (default 100)
 * blocks of 1000 bytes are left allocated at exit. Built with frame
 * pointers, as kleak needs for whole stacks.
 * Prints "ops N ns_per_op X leaked_bytes B" on stdout, timing the loop only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIVE 1024

static void *live[LIVE];

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

__attribute__((noinline)) static void *path_a(size_t n) { return malloc(n); }
__attribute__((noinline)) static void *path_b(size_t n) { return path_a(n); }
__attribute__((noinline)) static void *path_c(size_t n) { return malloc(n); }

int main(int argc, char **argv)
{
	long ops = argc > 1 ? atol(argv[1]) : 1000000;
	long leak = argc > 2 ? atol(argv[2]) : 100;
	unsigned x = 12345;
	void *volatile keep = NULL;

	double t0 = now_ns();
	for (long i = 0; i < ops; i++) {
		x = x * 1103515245 + 12345;
		unsigned slot = (x >> 8) % LIVE;
		size_t n = 16 + ((x >> 4) & 4095);
		free(live[slot]);
		void *p = (i & 1) ? path_b(n) : path_c(n);
		if ((i & 63) == 0) {
			free(p);
			p = calloc(1, n);
		}
		if ((i & 255) == 0)
			p = realloc(p, n * 2);
		if (!p)
			return 1;
		memset(p, 0, 8);
		live[slot] = p;
	}
	double t1 = now_ns();
	for (int i = 0; i < LIVE; i++)
		free(live[i]);
	for (long i = 0; i < leak; i++)
		keep = malloc(1000);
	(void)keep;
	printf("ops %ld ns_per_op %.1f leaked_bytes %ld\n", ops, (t1 - t0) / (double)ops, leak * 1000);
	return 0;
}
