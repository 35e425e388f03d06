// SPDX-License-Identifier: GPL-2.0
/* kleak-softirq SECONDS: frees in interrupts while kleak's free programs
 * run. Small writes to a loopback TCP stream (its receive path frees skbs
 * in softirq) and two threads that open and close files (kfree and
 * kmem_cache_free in process context), for SECONDS; prints "done" at the
 * end. */
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double end_at;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *receiver(void *arg)
{
	char buf[65536];
	int fd = *(int *)arg;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static void *opener(void *arg)
{
	char buf[256];

	(void)arg;
	while (now() < end_at) {
		int fd = open("/proc/self/stat", O_RDONLY);

		if (fd >= 0) {
			if (read(fd, buf, sizeof(buf)) < 0)
				perror("read");
			close(fd);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l, c, s;
	pthread_t rt, ot[2];
	char chunk[200];

	if (argc != 2) {
		fprintf(stderr, "usage: %s SECONDS\n", argv[0]);
		return 2;
	}
	end_at = now() + atof(argv[1]);
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &len)) {
		perror("listen");
		return 1;
	}
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a))) {
		perror("connect");
		return 1;
	}
	s = accept(l, NULL, NULL);
	if (s < 0) {
		perror("accept");
		return 1;
	}
	pthread_create(&rt, NULL, receiver, &s);
	for (int i = 0; i < 2; i++)
		pthread_create(&ot[i], NULL, opener, NULL);
	memset(chunk, 'x', sizeof(chunk));
	while (now() < end_at)
		if (write(c, chunk, sizeof(chunk)) < 0)
			break;
	close(c);
	pthread_join(rt, NULL);
	for (int i = 0; i < 2; i++)
		pthread_join(ot[i], NULL);
	puts("done");
	return 0;
}
