/* kleak-bench-uprobe: what one uprobe hit costs on this machine, by the
 * kind of instruction it replaces (bench/uprobe_cost.sh probes it).
 *
 *   kleak-bench-uprobe push|jcc|test N
 *
 * Calls one of three tiny functions N times and prints the time per call.
 * Each begins with a different instruction: push %rbp (the kernel emulates
 * it), je (emulated), test %rdi,%rdi (single-stepped out of line: a second
 * trap). glibc's malloc begins with a push, its free with a test. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long f_push(long x);
long f_jcc(long x);
long f_test(long x);
__asm__(".globl f_push\n.type f_push,@function\nf_push:\n push %rbp\n lea 1(%rdi),%rax\n pop %rbp\n ret\n"
	".size f_push, .-f_push\n"
	".globl f_jcc\n.type f_jcc,@function\nf_jcc:\n je 1f\n1: lea 1(%rdi),%rax\n ret\n.size f_jcc, .-f_jcc\n"
	".globl f_test\n.type f_test,@function\nf_test:\n test %rdi,%rdi\n lea 1(%rdi),%rax\n ret\n"
	".size f_test, .-f_test\n");

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: kleak-bench-uprobe push|jcc|test N\n");
		return 2;
	}
	long (*f)(long) = strcmp(argv[1], "push") == 0 ? f_push : strcmp(argv[1], "jcc") == 0 ? f_jcc : f_test;
	long n = atol(argv[2]), sum = 0;
	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		sum += f(i);
	double t1 = now_ns();
	printf("%s ns_per_call %.1f (%ld)\n", argv[1], (t1 - t0) / (double)n, sum & 1);
	return 0;
}
