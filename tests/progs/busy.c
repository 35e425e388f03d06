/* kleak-busy SECONDS: a busy workload that frees everything it allocates,
 * for `kleak --ci --family all`: every iteration writes, reads and unlinks
 * a 64 KiB file, moves 16 KiB over a fresh loopback TCP connection and over
 * a UNIX socket pair (closed with a reset: no TIME_WAIT), fills and drains a pipe, and every 8th iteration
 * forks and execs /bin/true. Prints "ops N" and exits 0 (1 on an error). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char buf[65536];

static int fail(const char *what)
{
	printf("error %s: %s\n", what, strerror(errno));
	return 1;
}

static int move_bytes(int out, int in, size_t n)
{
	size_t sent = 0, got = 0;
	while (got < n) {
		if (sent < n) {
			ssize_t w = write(out, buf, n - sent > 4096 ? 4096 : n - sent);
			if (w < 0)
				return -1;
			sent += (size_t)w;
		}
		ssize_t r = read(in, buf, sizeof(buf));
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
		return 2;
	}
	double end = now_s() + strtod(argv[1], NULL);
	char path[64];
	snprintf(path, sizeof(path), "/tmp/kleak-busy-%d", getpid());
	memset(buf, 'b', sizeof(buf));

	int lsn = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(addr);
	if (lsn < 0 || bind(lsn, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lsn, 8) != 0 ||
	    getsockname(lsn, (struct sockaddr *)&addr, &alen) != 0)
		return fail("listen");

	long ops = 0;
	while (now_s() < end) {
		int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
		if (fd < 0 || write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf) || pread(fd, buf, sizeof(buf), 0) < 0)
			return fail("file");
		close(fd);
		unlink(path);

		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)) != 0)
			return fail("connect");
		int a = accept4(lsn, NULL, NULL, SOCK_CLOEXEC);
		if (a < 0 || move_bytes(c, a, 16384) != 0)
			return fail("tcp");
		/* An abortive close (RST): no TIME_WAIT socket, which the kernel
		 * would rightly keep for 60 s after the workload. */
		struct linger off = {.l_onoff = 1, .l_linger = 0};
		setsockopt(c, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
		close(c);
		close(a);

		int sv[2], p[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || move_bytes(sv[0], sv[1], 16384) != 0)
			return fail("unix");
		close(sv[0]);
		close(sv[1]);
		if (pipe2(p, O_CLOEXEC) != 0 || move_bytes(p[1], p[0], 16384) != 0)
			return fail("pipe");
		close(p[0]);
		close(p[1]);

		if (ops % 8 == 0) {
			pid_t pid = fork();
			if (pid == 0) {
				execl("/bin/true", "true", (char *)NULL);
				_exit(127);
			}
			if (pid < 0 || waitpid(pid, NULL, 0) != pid)
				return fail("fork");
		}
		ops++;
	}
	close(lsn);
	printf("ops %ld\n", ops);
	return 0;
}
