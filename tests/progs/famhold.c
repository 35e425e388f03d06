/* kleak-famhold: holds N known allocations of one allocator family beyond
 * slab, then frees them on command:
 *
 *   kleak-famhold page N      N pages in a pipe (pipe_write -> alloc_page:
 *                             GFP_HIGHUSER | __GFP_ACCOUNT, not movable)
 *   kleak-famhold percpu N    a BPF per-CPU array of N 64-byte values: N
 *                             alloc_percpu()s (bpf_map_alloc_percpu)
 *   kleak-famhold vmalloc N   a BPF array of N KiB: one vmalloc() (maps
 *                             above 32 KiB go to bpf_map_area_alloc's vmalloc)
 *
 *   stdout "ready PID" -> stdin "hold" -> stdout "held N"
 *                      -> stdin "release" -> stdout "released"
 *   then waits for stdin EOF and exits.
 * Releasing closes the pipe or the map: a map is freed by a kernel worker
 * shortly after, not in this process's syscall. Needs root for the maps. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int map_create(__u32 type, __u32 value_size, __u32 max_entries)
{
	union bpf_attr attr;

	memset(&attr, 0, sizeof(attr));
	attr.map_type = type;
	attr.key_size = 4;
	attr.value_size = value_size;
	attr.max_entries = max_entries;
	return (int)syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
}

static int hold(const char *family, long n, int fds[2])
{
	static char page[4096];

	fds[0] = fds[1] = -1;
	if (strcmp(family, "page") == 0) {
		if (pipe2(fds, O_CLOEXEC) != 0 || fcntl(fds[1], F_SETPIPE_SZ, (int)(n * 4096)) < 0)
			return -1;
		memset(page, 'p', sizeof(page));
		for (long i = 0; i < n; i++)
			if (write(fds[1], page, sizeof(page)) != (ssize_t)sizeof(page))
				return -1;
		return 0;
	}
	if (strcmp(family, "percpu") == 0)
		fds[0] = map_create(BPF_MAP_TYPE_PERCPU_ARRAY, 64, (__u32)n);
	else if (strcmp(family, "vmalloc") == 0)
		fds[0] = map_create(BPF_MAP_TYPE_ARRAY, 1024, (__u32)n);
	else
		errno = EINVAL;
	return fds[0] < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
	char line[64];
	int fds[2];

	if (argc != 3) {
		fprintf(stderr, "usage: %s page|percpu|vmalloc N\n", argv[0]);
		return 2;
	}
	long n = strtol(argv[2], NULL, 10);
	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	if (hold(argv[1], n, fds) != 0) {
		printf("error %s\n", strerror(errno));
		return 1;
	}
	printf("held %ld\n", n);
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	printf("released\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
