/* kleak-pipes: a cache-like holder. On "hold" it opens N pipes (kernel
 * pipe_inode_info, buffer arrays, files) as fast as it can, prints
 * "held N", then keeps them, unchanged, until stdin ends. What a cache does:
 * fill, then stay flat. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	struct rlimit rl = {(rlim_t)(2 * n + 64), (rlim_t)(2 * n + 64)};
	setrlimit(RLIMIT_NOFILE, &rl);
	char line[64];
	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	for (long i = 0; i < n; i++) {
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) != 0) {
			perror("pipe2");
			return 1;
		}
	}
	printf("held %ld\n", n);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
