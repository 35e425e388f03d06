/* kleak-bench-empty: the floor under every BPF kmem tracer. Attaches a BPF
 * program that does nothing (r0 = 0; exit) to the kmalloc, kfree,
 * kmem_cache_alloc and kmem_cache_free tracepoints, as BTF-typed raw
 * tracepoints like kleak's, and holds them until SIGINT/SIGTERM. What a
 * workload loses under it is the tracepoint dispatch alone (the static
 * branch, __traceiter_*, bpf_trace_run*, the program call), which no
 * tracer of these events can avoid. Run as root; bench/overhead.sh runs it
 * as the tracer "empty". */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static const char *const events[] = {"kmalloc", "kfree", "kmem_cache_alloc", "kmem_cache_free"};

int main(void)
{
	const struct bpf_insn insns[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};
	sigset_t stop;

	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, NULL);
	for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
		int id = libbpf_find_vmlinux_btf_id(events[i], BPF_TRACE_RAW_TP);
		LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_RAW_TP,
			    .attach_btf_id = id > 0 ? (__u32)id : 0);
		int prog = id > 0 ? bpf_prog_load(BPF_PROG_TYPE_TRACING, "kleak_bench_nop", "GPL", insns, 2, &opts)
				  : -1;
		int link = prog >= 0 ? bpf_raw_tracepoint_open(NULL, prog) : -1;

		if (link < 0) {
			fprintf(stderr, "kleak-bench-empty: cannot attach to %s: %s\n", events[i], strerror(errno));
			return 1;
		}
	}
	fprintf(stderr, "kleak-bench-empty: attached\n");
	int sig;
	sigwait(&stop, &sig);
	return 0;
}
