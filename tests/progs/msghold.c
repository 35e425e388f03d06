/* kleak-msghold: holds N System V messages so the kernel keeps N known
 * kmalloc buffers (load_msg -> alloc_msg under do_msgsnd), then frees them
 * on command. Driven line by line over stdin/stdout by the tests:
 *
 *   kleak-msghold N [SIZE]   (SIZE defaults to 4000: a 4096-byte kmalloc)
 *   stdout "ready PID"     -> stdin "send"    -> stdout "held N"
 *                          -> stdin "release" -> stdout "released N"
 *   stdin "spread K": like "send", but K child processes send them (n/K
 *   each, the last one the rest), so the kernel's records name K tasks.
 *   stdin EOF or "exit": remove the queues and exit.
 *   stdin "drip MS": send one more message every MS milliseconds (a leak that
 *   keeps growing) until the next line arrives, then print "dripped K".
 *   stdin "keep": print "kept QID..." and exit WITHOUT removing the queues:
 *   the messages stay allocated in the kernel (a leak the caller must end
 *   with msgctl(IPC_RMID) or ipcrm).
 *
 * Message text is "LEAKMARK-<i>" padded with '.', so buffer contents are
 * recognizable. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_QUEUES 4096

struct msgbuf_big {
	long mtype;
	char mtext[8192];
};

static int die(const char *what)
{
	fprintf(stdout, "error %s: %s\n", what, strerror(errno));
	fflush(stdout);
	return 1;
}

/* A queue holds msgmnb bytes (16 KiB by default) and raising that needs
 * CAP_SYS_RESOURCE: open another queue whenever the current one is full. */
static int queues[MAX_QUEUES];
static int nq;
static long size = 4000;
static struct msgbuf_big m;

/* Opens one more queue. 0, or 1 after reporting the error. */
static int open_queue(void)
{
	if (nq == MAX_QUEUES)
		return die("too many queues");
	queues[nq] = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
	if (queues[nq] < 0)
		return die("msgget");
	nq++;
	return 0;
}

/* Sends message number i ("LEAKMARK-<i>" padded with '.'). 0, or 1 after
 * reporting the error. */
static int send_one(long i)
{
	m.mtype = 1;
	memset(m.mtext, '.', (size_t)size);
	int len = snprintf(m.mtext, (size_t)size, "LEAKMARK-%ld", i);
	if (len < size)
		m.mtext[len] = '.';
	while (nq == 0 || msgsnd(queues[nq - 1], &m, (size_t)size, IPC_NOWAIT) != 0) {
		if (nq > 0 && errno != EAGAIN)
			return die("msgsnd");
		if (open_queue())
			return 1;
	}
	return 0;
}

/* Sends messages [first, first + count) from a child process. The parent
 * opens the queues first, so the child's sends land where the parent will
 * find and remove them. 0, or 1 after reporting the error. */
static int send_from_child(long first, long count)
{
	for (long i = first; i < first + count; i++) {
		long q = i / (16384 / size);
		while (nq <= q)
			if (open_queue())
				return 1;
	}
	pid_t pid = fork();
	if (pid < 0)
		return die("fork");
	if (pid == 0) {
		for (long i = first; i < first + count; i++) {
			m.mtype = 1;
			if (msgsnd(queues[i / (16384 / size)], &m, (size_t)size, IPC_NOWAIT) != 0)
				_exit(1);
		}
		_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		errno = EIO;
		return die("child msgsnd");
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s N [SIZE]\n", argv[0]);
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	size = argc > 2 ? strtol(argv[2], NULL, 10) : 4000;
	if (n < 0 || size < 1 || size > 8192 || n > 2000000) {
		fprintf(stderr, "bad N or SIZE\n");
		return 2;
	}
	char line[64];
	long held = 0;
	printf("ready %d\n", getpid());
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		if (!strncmp(line, "send", 4)) {
			for (long i = 0; i < n; i++) {
				if (send_one(i))
					return 1;
				held++;
			}
			printf("held %ld\n", held);
		} else if (!strncmp(line, "spread ", 7)) {
			long k = atol(line + 7);
			if (k < 1 || k > n)
				k = 1;
			memset(m.mtext, '.', (size_t)size);
			for (long c = 0; c < k; c++) {
				long first = c * (n / k), count = c == k - 1 ? n - first : n / k;
				if (send_from_child(first, count))
					return 1;
			}
			held = n;
			printf("held %ld\n", held);
		} else if (!strncmp(line, "release", 7)) {
			long got = 0;
			for (int i = 0; i < nq; i++)
				while (msgrcv(queues[i], &m, sizeof(m.mtext), 0, IPC_NOWAIT) >= 0)
					got++;
			held -= got;
			printf("released %ld\n", got);
		} else if (!strncmp(line, "drip ", 5)) {
			int ms = atoi(line + 5);
			long dripped = 0;
			struct pollfd in = {.fd = 0, .events = POLLIN};
			while (held < n && poll(&in, 1, ms) == 0) {
				if (send_one(held))
					return 1;
				held++;
				dripped++;
			}
			if (!fgets(line, sizeof(line), stdin))
				line[0] = 0;
			printf("dripped %ld\n", dripped);
		} else if (!strncmp(line, "exit", 4)) {
			break;
		} else if (!strncmp(line, "keep", 4)) {
			printf("kept");
			for (int i = 0; i < nq; i++)
				printf(" %d", queues[i]);
			printf("\n");
			fflush(stdout);
			return 0;
		}
		fflush(stdout);
	}
	for (int i = 0; i < nq; i++)
		msgctl(queues[i], IPC_RMID, NULL);
	return 0;
}
