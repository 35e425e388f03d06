// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* kleak_user: track outstanding user-space heap allocations of chosen
 * processes by user stack, with uprobes on their allocator.
 *
 * Two generic programs serve every allocator function: kleak_u_enter
 * (uprobe) and kleak_u_exit (uretprobe). Which function, and which traced
 * process, each attachment stands for is its BPF cookie (kleak_user.h), so
 * one program handles malloc, calloc, realloc, ... and the records of every
 * traced process land in one live map, keyed apart by process slot.
 *
 * Entry saves the arguments per thread (keyed by pid_tgid); exit reads the
 * result, records it, and captures the user stack there: at function entry
 * a frame-pointer walk would skip the caller (its return address is on the
 * stack, not yet in a frame), at exit the instruction pointer is in the
 * caller. Calls made inside another allocator call on the same thread
 * (malloc's own mmap for a large block, reallocarray's realloc, realloc(p, 0)
 * calling free) are counted and skipped, so nothing is recorded twice.
 * free and munmap need no exit: they act at entry. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "kleak_user.h"
#include "refuse.bpf.h"
#include "stack_store.bpf.h"
#include "record.bpf.h"

#define BPF_F_USER_STACK_FLAG (1ULL << 8) /* BPF_F_USER_STACK */

/* Set by the loader before load; see user/probe/uprobe_loader.cpp. */
const volatile __u64 min_size = 0; /* bytes bounds, inclusive */
const volatile __u64 max_size = ~0ULL;
/* 1: every block gets its own stack. N > 1 (--stack-sample N): the sampled
 * mode of kleak.bpf.c's stack_sample_every, per call site (the return
 * address in the caller) and traced process. */
const volatile __u32 stack_sample_every = 1;

/* Outstanding allocations: key is the address | slot << KLEAK_USER_SLOT_SHIFT.
 * max_entries of both maps are set from options at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct kleak_alloc);
	__uint(max_entries, 262144);
} kleak_ulive SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct kleak_stack);
	__uint(max_entries, 16384);
} kleak_ustacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_stack);
	__uint(max_entries, 1);
} kleak_uscratch SEC(".maps");

/* The sampled mode's per-CPU call-site cache (stack_store.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_site_cache);
	__uint(max_entries, 1);
} kleak_usites SEC(".maps");

/* An allocator call in flight on one thread: its arguments until it returns.
 * BPF-only, not ABI. */
struct inflight {
	__u64 arg[3];
	__u32 fn;    /* enum kleak_user_fn */
	__u32 depth; /* allocator calls nested in this one, plus one */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct inflight);
	__uint(max_entries, 16384);
} kleak_uinflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_counters);
	__uint(max_entries, 1);
} kleak_ucounts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_user_counters);
	__uint(max_entries, 1);
} kleak_uextra SEC(".maps");

/* Traced processes: tgid -> slot, filled by user space before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, KLEAK_USER_MAX_PIDS);
} kleak_uprocs SEC(".maps");

/* Per slot, bpf_ktime_get_ns() of the process's last exec: its records from
 * before belong to an address space that is gone, user space drops them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, KLEAK_USER_MAX_PIDS);
} kleak_uexec SEC(".maps");

static __always_inline struct kleak_counters *ucounters(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kleak_ucounts, &zero);
}

static __always_inline void count(int idx)
{
	struct kleak_counters *c = ucounters();

	if (c && idx >= 0 && idx < KLEAK_CNT_MAX)
		kleak_count(c, idx);
}

static __always_inline void count_user(int idx)
{
	__u32 zero = 0;
	struct kleak_user_counters *c = bpf_map_lookup_elem(&kleak_uextra, &zero);

	if (c && idx >= 0 && idx < KLEAK_UCNT_MAX)
		__sync_fetch_and_add(&c->v[idx], 1);
}

static __always_inline __u64 live_key(__u64 slot, __u64 addr)
{
	return (addr & KLEAK_USER_ADDR_MASK) | (slot << KLEAK_USER_SLOT_SHIFT);
}

/* Removes the record at addr. Returns whether there was one. */
static __always_inline bool drop(__u64 slot, __u64 addr)
{
	struct kleak_counters *c = ucounters();

	return c && kleak_free_record(&kleak_ulive, c, live_key(slot, addr));
}

static __always_inline void record(struct pt_regs *ctx, __u64 slot, __u32 fn, __u64 addr, __u64 bytes,
				   __u64 bytes_req)
{
	struct kleak_counters *c = ucounters();
	struct kleak_alloc a = {};
	__u64 key = live_key(slot, addr);
	__u64 id = bpf_get_current_pid_tgid();

	if (!c)
		return;
	if (bytes < min_size || bytes > max_size) {
		kleak_count(c, KLEAK_CNT_ALLOC_FILTERED);
		/* The address is in use again: any record there is stale. */
		kleak_drop_stale(&kleak_ulive, c, key, NULL);
		return;
	}
	a.ts_ns = bpf_ktime_get_ns();
	a.call_site = PT_REGS_IP(ctx); /* in the caller: this is a return probe */
	a.bytes_alloc = bytes;
	a.bytes_req = bytes_req > 0xffffffffULL ? 0xffffffffU : (__u32)bytes_req;
	a.tgid = id >> 32;
	a.pid = (__u32)id;
	a.family = KLEAK_FAMILY_USER_BASE + fn;
	if (stack_sample_every <= 1) {
		a.stack_id = kleak_store_stack(ctx, &kleak_uscratch, &kleak_ustacks, BPF_F_USER_STACK_FLAG,
					       &a.stack_err);
	} else {
		bool hint;

		/* Code at one address in two traced processes may be two
		 * programs: the slot keeps their sites apart. */
		a.stack_id = kleak_sampled_stack(ctx, &kleak_usites, &kleak_uscratch, &kleak_ustacks,
						 BPF_F_USER_STACK_FLAG, a.call_site ^ (slot << KLEAK_USER_SLOT_SHIFT),
						 stack_sample_every, &hint, &a.stack_err);
		if (hint)
			a.flags |= KLEAK_ALLOC_STACK_HINT;
	}
	if (a.stack_err)
		kleak_count_stack_error(c, a.stack_err);
	/* Reports take task names from blocks with their own stack. */
	if (!(a.flags & KLEAK_ALLOC_STACK_HINT))
		bpf_get_current_comm(a.comm, sizeof(a.comm));
	/* A live address again: its free went past the probes; the new
	 * record wins. */
	kleak_put_record(&kleak_ulive, key, &a, c, NULL);
}

static __always_inline __u64 page_round(__u64 n)
{
	return (n + KLEAK_USER_PAGE_SIZE - 1) & ~(__u64)(KLEAK_USER_PAGE_SIZE - 1);
}

/* munmap(addr, len) at entry: whole pages from addr. A recorded mapping
 * starting at addr loses its head (munmap of the middle or tail of a
 * mapping is not followed: the record keeps its size until the head goes). */
static __always_inline void unmap(__u64 slot, __u64 addr, __u64 len)
{
	__u64 key = live_key(slot, addr);
	struct kleak_alloc *a;
	struct kleak_alloc rest;

	len = page_round(len);
	a = bpf_map_lookup_elem(&kleak_ulive, &key);
	if (a && len && len < a->bytes_alloc) {
		/* Copy before deleting the key: the value goes with it. */
		rest = *a;
		rest.bytes_alloc -= len;
		rest.bytes_req = rest.bytes_alloc > 0xffffffffULL ? 0xffffffffU : (__u32)rest.bytes_alloc;
		drop(slot, addr);
		key = live_key(slot, addr + len);
		bpf_map_update_elem(&kleak_ulive, &key, &rest, BPF_ANY);
		count_user(KLEAK_UCNT_UNMAP_PARTIAL);
		return;
	}
	drop(slot, addr);
}

SEC("uprobe")
int kleak_u_enter(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 fn = cookie & 0xff;
	__u64 slot = (cookie >> 8) & 0xff;
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *st = bpf_map_lookup_elem(&kleak_uinflight, &id);
	struct inflight in = {};

	KLEAK_REFUSE_IF(KLEAK_PART_CORE);
	if (st) {
		/* Inside another allocator call on this thread (e.g. glibc's
		 * realloc(p, 0) calls free, malloc mmaps large blocks): the
		 * outer call is what the program asked for. */
		count_user(KLEAK_UCNT_NESTED);
		if (fn != KLEAK_UFN_FREE && fn != KLEAK_UFN_MUNMAP)
			st->depth++;
		return 0;
	}
	if (fn == KLEAK_UFN_FREE) {
		__u64 p = PT_REGS_PARM1(ctx);

		if (p)
			drop(slot, p);
		return 0;
	}
	if (fn == KLEAK_UFN_MUNMAP) {
		unmap(slot, PT_REGS_PARM1(ctx), PT_REGS_PARM2(ctx));
		return 0;
	}
	if (fn == KLEAK_UFN_MMAP && !(PT_REGS_PARM4(ctx) & KLEAK_MAP_ANONYMOUS)) {
		/* A file mapping (locale data, a shared library, a data
		 * file) is not an allocation: counted, not recorded. */
		count(KLEAK_CNT_ALLOC_SEEN);
		count(KLEAK_CNT_ALLOC_FILTERED);
		return 0;
	}
	in.arg[0] = PT_REGS_PARM1(ctx);
	in.arg[1] = PT_REGS_PARM2(ctx);
	in.arg[2] = PT_REGS_PARM3(ctx);
	in.fn = fn;
	in.depth = 1;
	if (bpf_map_update_elem(&kleak_uinflight, &id, &in, BPF_ANY)) {
		count(KLEAK_CNT_ALLOC_SEEN);
		count_user(KLEAK_UCNT_INFLIGHT_FULL);
	}
	return 0;
}

/* What the call `in` returning `ret` asked for: the block's size, the block
 * it ends (realloc, mremap) and the block it returned. False for a function
 * this file does not know. */
static __always_inline bool requested(const struct inflight *in, __u64 ret, __u64 *size, __u64 *old, __u64 *ptr)
{
	*old = 0;
	*ptr = ret;
	switch (in->fn) {
	case KLEAK_UFN_MALLOC:
	case KLEAK_UFN_VALLOC:
		*size = in->arg[0];
		return true;
	case KLEAK_UFN_PVALLOC:
		*size = page_round(in->arg[0]);
		if (!*size)
			*size = KLEAK_USER_PAGE_SIZE;
		return true;
	case KLEAK_UFN_CALLOC:
		*size = in->arg[0] * in->arg[1]; /* overflow makes calloc fail */
		return true;
	case KLEAK_UFN_ALIGNED_ALLOC:
	case KLEAK_UFN_MEMALIGN:
		*size = in->arg[1];
		return true;
	case KLEAK_UFN_REALLOC:
	case KLEAK_UFN_REALLOCARRAY:
		*old = in->arg[0];
		*size = in->fn == KLEAK_UFN_REALLOC ? in->arg[1] : in->arg[1] * in->arg[2];
		return true;
	case KLEAK_UFN_POSIX_MEMALIGN:
		/* int posix_memalign(void **memptr, size_t align, size_t size) */
		*size = in->arg[2];
		*ptr = 0;
		if ((int)ret == 0 && bpf_probe_read_user(ptr, sizeof(*ptr), (void *)in->arg[0]))
			*ptr = 0;
		return true;
	case KLEAK_UFN_MMAP:
		*size = page_round(in->arg[1]);
		return true;
	case KLEAK_UFN_MREMAP:
		/* mremap(old, old_size, new_size, flags, ...) */
		*old = in->arg[0];
		*size = page_round(in->arg[2]);
		return true;
	default:
		return false;
	}
}

SEC("uretprobe")
int kleak_u_exit(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 slot = (cookie >> 8) & 0xff;
	__u64 id = bpf_get_current_pid_tgid();
	struct inflight *st = bpf_map_lookup_elem(&kleak_uinflight, &id);
	struct inflight in;
	__u64 ret = PT_REGS_RC(ctx);
	__u64 old, size = 0, ptr;
	bool failed;

	if (!st)
		return 0; /* entered before kleak attached */
	if (st->depth > 1) {
		st->depth--;
		return 0;
	}
	in = *st; /* copy before deleting the key */
	bpf_map_delete_elem(&kleak_uinflight, &id);
	count(KLEAK_CNT_ALLOC_SEEN);
	if (!requested(&in, ret, &size, &old, &ptr))
		return 0;
	if (in.fn == KLEAK_UFN_MMAP || in.fn == KLEAK_UFN_MREMAP)
		failed = ret == ~0ULL; /* MAP_FAILED */
	else
		failed = ptr == 0;
	if (failed) {
		/* glibc's realloc(p, 0) frees p and returns NULL (so does
		 * reallocarray(p, 0, n)); any other failure leaves p alone. */
		if ((in.fn == KLEAK_UFN_REALLOC || in.fn == KLEAK_UFN_REALLOCARRAY) && old && !size)
			drop(slot, old);
		else
			count(KLEAK_CNT_ALLOC_FAILED);
		return 0;
	}
	/* A move (or a resize in place) ends the old block. */
	if (old)
		drop(slot, old);
	record(ctx, slot, in.fn, ptr, size, size);
	return 0;
}

/* exec replaces the address space: note when, per traced process. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(kleak_u_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);
	__u32 *slot = bpf_map_lookup_elem(&kleak_uprocs, &tgid);
	__u64 now;

	KLEAK_REFUSE_IF(KLEAK_PART_EXEC_FOLLOWER);
	if (!slot)
		return 0;
	now = bpf_ktime_get_ns();
	bpf_map_update_elem(&kleak_uexec, slot, &now, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
