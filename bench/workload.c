/* kleak-bench-work: fixed-work workloads for overhead measurements.
 *
 *   kleak-bench-work msg OPS    OPS x (msgsnd + msgrcv of 4000 bytes):
 *                               1 kmalloc + 2 kfree per op (load_msg, free_msg)
 *   kleak-bench-work proc OPS   OPS x open/read/close of /proc/stat
 *   kleak-bench-work pipe OPS   OPS x (write + read of 16 KiB through a fresh
 *                               pipe): page-heavy, four pipe-buffer pages
 *                               allocated and freed per op, plus the pipe's
 *                               slab objects (pipe_inode_info, files)
 *
 * Prints "ops N ns_per_op X" on stdout. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static struct {
	long mtype;
	char mtext[4000];
} m;

static char buf[65536];

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s msg|proc|pipe OPS\n", argv[0]);
		return 2;
	}
	long ops = strtol(argv[2], NULL, 10);
	int msg = !strcmp(argv[1], "msg");
	int pipe_wl = !strcmp(argv[1], "pipe");
	int q = -1;
	if (msg) {
		q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
		if (q < 0) {
			perror("msgget");
			return 1;
		}
		memset(m.mtext, 'b', sizeof(m.mtext));
	} else if (strcmp(argv[1], "proc") && !pipe_wl) {
		fprintf(stderr, "unknown workload %s\n", argv[1]);
		return 2;
	}
	double t0 = now_ns();
	for (long i = 0; i < ops; i++) {
		if (msg) {
			m.mtype = 1;
			if (msgsnd(q, &m, sizeof(m.mtext), 0) || msgrcv(q, &m, sizeof(m.mtext), 0, 0) < 0) {
				perror("msg");
				return 1;
			}
		} else if (pipe_wl) {
			int p[2];
			if (pipe(p) || write(p[1], buf, 16384) != 16384 || read(p[0], buf, 16384) != 16384) {
				perror("pipe");
				return 1;
			}
			close(p[0]);
			close(p[1]);
		} else {
			int fd = open("/proc/stat", O_RDONLY);
			if (fd < 0 || read(fd, buf, sizeof(buf)) < 0) {
				perror("/proc/stat");
				return 1;
			}
			close(fd);
		}
	}
	double t1 = now_ns();
	if (msg)
		msgctl(q, IPC_RMID, NULL);
	printf("ops %ld ns_per_op %.1f\n", ops, (t1 - t0) / ops);
	return 0;
}
