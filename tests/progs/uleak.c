// kleak-uleak: leaks known user-space blocks from known functions, through
// every allocator kleak probes, and frees as many others, so tests can
// check kleak names each leaking function with exact counts and bytes.
// Built with -O0 -fno-omit-frame-pointer (tests/CMakeLists.txt) so every
// leaking function keeps its own frame.
//
//   kleak-uleak           leak, then exit (kleak user -c / valgrind / heaptrack)
//   kleak-uleak --hold    wait for a line on stdin, leak, print "leaked",
//                         wait for stdin to close (kleak user -p)
//   kleak-uleak --clean   allocate through every path, free it all, exit
//
// What stays outstanding at exit (also printed with --expect):
//   leak_first        1 x malloc(77)                 (first statement of main)
//   leak_malloc      10 x malloc(100)
//   leak_calloc       5 x calloc(4, 50)  = 200
//   leak_realloc      3 x realloc(malloc(10), 3000) = 3000 (the 10-byte blocks moved, not leaked)
//   leak_memalign     4 x posix_memalign(64, 512)  = 512
//   leak_big          1 x malloc(1 MiB)  (glibc mmaps it itself: counted once)
//   leak_mmap         2 x mmap(12288)    (not in valgrind's or heaptrack's counts)
// and keeps a file mapping (map_file) that kleak must not report: not heap.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// Kept reachable, so the compiler cannot drop the allocations.
static void *volatile sink[64];
static int nsink;

static void keep(void *p)
{
	if (!p) {
		perror("kleak-uleak: allocation failed");
		exit(1);
	}
	sink[nsink++ % 64] = p;
	memset(p, 1, 1);
}

__attribute__((noinline)) static void leak_first(void)
{
	keep(malloc(77));
}

__attribute__((noinline)) static void leak_malloc(void)
{
	for (int i = 0; i < 10; i++)
		keep(malloc(100));
}

__attribute__((noinline)) static void leak_calloc(void)
{
	for (int i = 0; i < 5; i++)
		keep(calloc(4, 50));
}

__attribute__((noinline)) static void leak_realloc(void)
{
	for (int i = 0; i < 3; i++) {
		void *p = malloc(10);
		memset(p, 2, 10);
		keep(realloc(p, 3000));
	}
}

__attribute__((noinline)) static void leak_memalign(void)
{
	for (int i = 0; i < 4; i++) {
		void *p = NULL;
		if (posix_memalign(&p, 64, 512) != 0)
			p = NULL;
		keep(p);
	}
}

__attribute__((noinline)) static void leak_big(void)
{
	keep(malloc(1 << 20));
}

__attribute__((noinline)) static void leak_mmap(void)
{
	for (int i = 0; i < 2; i++) {
		void *p = mmap(NULL, 12288, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		keep(p == MAP_FAILED ? NULL : p);
	}
}

// A file mapping kept until exit: mapped file data, not an allocation.
__attribute__((noinline)) static void map_file(void)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0); /* copy on write */
	keep(p == MAP_FAILED ? NULL : p);
	close(fd);
}

// Allocates and frees through every path: nothing of it may be reported.
__attribute__((noinline)) static void churn(void)
{
	for (int i = 0; i < 100; i++) {
		void *a = malloc(64 + i);
		void *b = calloc(3, 33);
		void *c = realloc(malloc(8), 2000);
		void *d = NULL;
		if (posix_memalign(&d, 128, 256) != 0)
			d = NULL;
		void *e = aligned_alloc(64, 640);
		void *f = valloc(100);
		void *g = reallocarray(NULL, 7, 9);
		void *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		void *big = malloc(300000);
		if (!a || !b || !c || !d || !e || !f || !g || m == MAP_FAILED || !big) {
			fprintf(stderr, "kleak-uleak: allocation failed\n");
			exit(1);
		}
		g = reallocarray(g, 9, 9);
		free(a);
		free(b);
		free(c);
		free(d);
		free(e);
		free(f);
		free(g);
		free(big);
		munmap(m, 8192);
		void *z = realloc(malloc(5), 0); /* glibc: frees the block, returns NULL */
		free(z);
	}
}

static void leak_all(void)
{
	leak_malloc();
	leak_calloc();
	leak_realloc();
	leak_memalign();
	leak_big();
	leak_mmap();
	map_file();
	churn();
}

int main(int argc, char **argv)
{
	leak_first();
	if (argc > 1 && strcmp(argv[1], "--clean") == 0) {
		/* Everything allocated is freed: nothing may be reported. */
		free(sink[0]);
		churn();
		return 0;
	}
	int hold = argc > 1 && strcmp(argv[1], "--hold") == 0;
	if (argc > 1 && strcmp(argv[1], "--expect") == 0) {
		printf("leak_first 1 77\nleak_malloc 10 1000\nleak_calloc 5 1000\nleak_realloc 3 9000\n"
		       "leak_memalign 4 2048\nleak_big 1 1048576\nleak_mmap 2 24576\n");
		return 0;
	}
	char line[64];
	if (hold && !fgets(line, sizeof(line), stdin))
		return 1;
	leak_all();
	if (hold) {
		/* write(2), not stdio: stdout's buffer would be one more block. */
		if (write(1, "leaked\n", 7) != 7)
			return 1;
		while (fgets(line, sizeof(line), stdin))
			;
	}
	return 0;
}
