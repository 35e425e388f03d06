/* kleak-churn: a workload that allocates and frees everything it allocates.
 *
 *   kleak-churn proc N   N x open/read/close of /proc/stat (and /proc/schedstat
 *                        where the kernel has it): seq_file buffers
 *   kleak-churn msg N    N x msgsnd + msgrcv of 4000 bytes on a private queue
 *
 * Prints "ready PID", waits for a line on stdin, works, prints "done OPS",
 * then waits for stdin EOF before exiting, so tests can look at what the
 * kernel still holds for this process while it is alive. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <unistd.h>

static long read_file(const char *path)
{
	static char buf[65536];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	long total = 0;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		total += r;
	close(fd);
	return total;
}

static long churn_proc(long n)
{
	int schedstat = access("/proc/schedstat", R_OK) == 0;
	long ops = 0;
	for (long i = 0; i < n; i++) {
		if (read_file("/proc/stat") < 0)
			return -1;
		ops++;
		if (schedstat && read_file("/proc/schedstat") >= 0)
			ops++;
	}
	return ops;
}

static long churn_msg(long n)
{
	static struct {
		long mtype;
		char mtext[4000];
	} m;
	int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (q < 0)
		return -1;
	memset(m.mtext, 'c', sizeof(m.mtext));
	long ops = 0;
	for (long i = 0; i < n; i++) {
		m.mtype = 1;
		if (msgsnd(q, &m, sizeof(m.mtext), 0) != 0 || msgrcv(q, &m, sizeof(m.mtext), 0, 0) < 0)
			break;
		ops++;
	}
	msgctl(q, IPC_RMID, NULL);
	return ops;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s proc|msg N\n", argv[0]);
		return 2;
	}
	long n = strtol(argv[2], NULL, 10);
	char line[64];
	/* Touch the read buffer now: a first-touch page fault during the work
	 * would allocate process-lifetime memory (anon_vma) under read(). */
	read_file("/proc/stat");
	printf("ready %d\n", getpid());
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	long ops = !strcmp(argv[1], "proc") ? churn_proc(n) : !strcmp(argv[1], "msg") ? churn_msg(n) : -2;
	if (ops < 0) {
		printf("error %s\n", strerror(errno));
		return 1;
	}
	printf("done %ld\n", ops);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
