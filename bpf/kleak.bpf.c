// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* kleak: track outstanding kernel allocations by kernel stack: slab
 * (kmalloc, kmem_cache), and where asked for pages, percpu and vmalloc.
 *
 * Hot path per allocation: filters, one stack capture, one map update
 * (record_alloc, every family). Per free: one map delete (record_free).
 * Counters are per-CPU, per family, and cover every loss. Every allocation
 * also drops a stale record at its address (a free that bypassed the
 * hooks), so pairing heals itself. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "kleak.h"
#include "refuse.bpf.h"
#include "compat.bpf.h"
#include "stack_store.bpf.h"
#include "record.bpf.h"

/* This file is built twice (CMakeLists.txt): kleak_sc.bpf.o with the
 * verified stack cache, kleak.bpf.o without. Not a constant the verifier
 * prunes but two objects, because the cache's bpf_loop callbacks are
 * subprograms, and a kernel that cannot load them (before v5.13's
 * BPF_PSEUDO_FUNC: "number of funcs in func_info doesn't match number of
 * subprogs", seen on Debian's 5.10) refuses every program that holds them,
 * even behind a branch it would prune. The loader opens kleak_sc where the
 * cache is wanted, and drops to kleak when the kernel refuses it. */
#ifndef KLEAK_STACK_CACHE
#define KLEAK_STACK_CACHE 0
#endif

#define EFAULT 14
#define ENOMEM 12
#define EEXIST 17
#define E2BIG 7
#define ENOENT 2

/* Set by the loader before load; see user/probe/loader.cpp. */
const volatile __u32 self_tgid = 0;   /* kleak itself: never recorded */
const volatile __u32 target_tgid = 0; /* 0 = every task */
const volatile bool follow_tasks = 0;  /* record only tasks in kleak_tasks */
const volatile __u64 min_size = 0;    /* bytes_alloc bounds, inclusive */
const volatile __u64 max_size = ~0ULL;
/* --cache NAME: a kmalloc cache is a size (above) and a kmalloc_type()
 * (-1: any); any other cache is a name for kmem_cache_alloc. The program
 * of the other family then records nothing. */
const volatile bool kmalloc_off = 0;
const volatile bool kmem_cache_off = 0;
const volatile int kmalloc_type = -1;
const volatile __u64 gfp_account = 0x400000; /* __GFP_ACCOUNT, resolved from BTF by the loader */
const volatile char cache_name[KLEAK_CACHE_NAME_LEN] = {};
/* 1: every allocation gets its own stack (exact mode). N > 1: the sampled
 * (low-overhead) mode: an allocation's stack is captured when its call site
 * is new to this CPU's site cache, else with probability 1/N; the others
 * carry the stack last captured at their call site as a hint, flagged
 * KLEAK_ALLOC_STACK_HINT. Pairing is exact in both modes: every
 * allocation is recorded. */
const volatile __u32 stack_sample_every = 1;

/* max_entries of both maps are set from options at load time. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct kleak_alloc);
	__uint(max_entries, 262144);
} kleak_live SEC(".maps");

/* Stacks keyed by a 64-bit hash of their frames: see stack_store.bpf.h. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct kleak_stack);
	__uint(max_entries, 8192);
} kleak_stacks SEC(".maps");

/* Per-CPU room to capture a stack in: too large for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_stack);
	__uint(max_entries, 1);
} kleak_scratch SEC(".maps");

/* Missed-free evidence per cache or call site: see kleak.h. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, KLEAK_MAX_MISSED_SITES);
} kleak_missed SEC(".maps");

/* --peek requests and results: see kleak.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_peek_slot);
	__uint(max_entries, KLEAK_PEEK_SLOTS);
} kleak_peek SEC(".maps");

/* Processes (tgids) followed with follow_tasks: seeded by user space,
 * grown by kleak_fork as they fork. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, KLEAK_MAX_TASKS);
} kleak_tasks SEC(".maps");

/* One struct kleak_counters per family (enum kleak_family); reports add
 * the two slab families'. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_counters);
	__uint(max_entries, KLEAK_FAMILY_MAX);
} kleak_counters SEC(".maps");

/* The sampled mode's per-CPU call-site cache (stack_store.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_site_cache);
	__uint(max_entries, 1);
} kleak_sites SEC(".maps");

static __always_inline struct kleak_counters *counters(__u32 family)
{
	return bpf_map_lookup_elem(&kleak_counters, &family);
}

static __always_inline bool task_wanted(__u32 tgid)
{
	if (tgid == self_tgid)
		return false;
	if (follow_tasks)
		return bpf_map_lookup_elem(&kleak_tasks, &tgid) != NULL;
	return !target_tgid || tgid == target_tgid;
}

#if KLEAK_STACK_CACHE
#include "stack_cache.bpf.h"

/* The stack cache's knobs and maps (bpf/stack_cache.bpf.h), set and sized
 * by the loader (user/probe/loader.cpp). */
const volatile __u32 stack_cache_mode = KLEAK_SC_OFF;
const volatile __u32 sc_sets_mask = KLEAK_SC_SLOTS / KLEAK_SC_WAYS - 1;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_sc_entry);
	__uint(max_entries, KLEAK_SC_SLOTS);
} kleak_sc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kleak_sc_work);
	__uint(max_entries, 1);
} kleak_scwork SEC(".maps");
#endif

/* Captures the current kernel stack into kleak_stacks (stack_store.bpf.h),
 * through the verified stack cache when it is on (stack_cache.bpf.h).
 * Returns its key, or 0 with *err set to -errno. */
static __always_inline __u64 capture_stack(void *ctx, struct kleak_counters *c, __u64 call_site, int *err)
{
#if KLEAK_STACK_CACHE
	int outcome = KLEAK_SC_UNCACHED;
	bool mismatch = false;
	__u64 key;

	struct kleak_sc_maps m = {
		.cache = &kleak_sc,
		.work = &kleak_scwork,
		.scratch = &kleak_scratch,
		.stacks = &kleak_stacks,
		.sets_mask = sc_sets_mask,
		.mode = stack_cache_mode,
	};

	if (stack_cache_mode == KLEAK_SC_OFF || !KLEAK_SC_ARCH)
		return kleak_store_stack(ctx, &kleak_scratch, &kleak_stacks, KLEAK_STACK_SKIP, err);
	key = kleak_cached_stack(ctx, call_site, &m, err, &outcome, &mismatch);
	/* enum kleak_sc_outcome is in the counters' order */
	if (outcome >= KLEAK_SC_HIT && outcome <= KLEAK_SC_PAUSED)
		kleak_count(c, KLEAK_CNT_SC_HIT + outcome);
	if (mismatch)
		kleak_count(c, KLEAK_CNT_SC_MISMATCH);
	return key;
#else
	return kleak_store_stack(ctx, &kleak_scratch, &kleak_stacks, KLEAK_STACK_SKIP, err);
#endif
}

/* The sampled mode: see stack_sample_every. */
static __always_inline void sampled_stack(void *ctx, struct kleak_alloc *a)
{
	bool hint;

	a->stack_id = kleak_sampled_stack(ctx, &kleak_sites, &kleak_scratch, &kleak_stacks, KLEAK_STACK_SKIP, a->call_site,
					  stack_sample_every, &hint, &a->stack_err);
	if (hint)
		a->flags |= KLEAK_ALLOC_STACK_HINT;
}

/* kmalloc_type() of v5.x/6.x: which kmalloc cache family gfp picks. */
static __always_inline int kmalloc_type_of(__u64 gfp)
{
	if (gfp & 0x01) /* __GFP_DMA, bit 0 in every version */
		return 3;
	if (gfp & KLEAK_GFP_RECLAIMABLE)
		return 2;
	if (gfp & gfp_account)
		return 1;
	return 0;
}

static __always_inline bool cache_name_matches(const struct kmem_cache *s)
{
	char buf[KLEAK_CACHE_NAME_LEN];

	if (bpf_probe_read_kernel_str(buf, sizeof(buf), BPF_CORE_READ(s, name)) < 0)
		return false;
	for (int i = 0; i < KLEAK_CACHE_NAME_LEN; i++) {
		if (buf[i] != cache_name[i])
			return false;
		if (!buf[i])
			return true;
	}
	return true;
}

/* One allocation, as a family's program saw it. */
struct alloc_event {
	__u64 key;       /* the address: object, struct page *, __percpu pointer, vmap start */
	__u64 bytes;     /* what the allocator handed out */
	__u64 call_site; /* 0 where the event has none */
	__u64 cache;     /* struct kmem_cache *, 0 for the others */
	__u32 bytes_req; /* what the caller asked for (pages: the order) */
	__u32 family;    /* enum kleak_family */
	__u32 flags;     /* KLEAK_ALLOC_* */
	bool wanted;     /* the program's own filter (--cache) passed */
	bool slab;       /* the sampled mode and missed-free sites (kleak_missed) apply */
};

/* An allocation event begins: counted as seen; false (counted as failed)
 * when the allocation failed, and there is nothing to record. */
static __always_inline bool alloc_seen(struct kleak_counters *c, __u64 key)
{
	kleak_count(c, KLEAK_CNT_ALLOC_SEEN);
	if (key)
		return true;
	kleak_count(c, KLEAK_CNT_ALLOC_FAILED);
	return false;
}

/* Records one allocation in `live`, for every family: the filters first
 * (before the expensive stack walk), then the stack, then the record. The
 * caller counted it as seen (alloc_seen) and ruled out its own exclusions. */
static __always_inline void record_alloc(void *ctx, void *live, struct kleak_counters *c,
					 const struct alloc_event *ev)
{
	struct kleak_alloc a = {};
	__u64 id = bpf_get_current_pid_tgid();
	__u64 key = ev->key;
	/* where missed frees of slab objects are noted */
	void *missed = ev->slab ? (void *)&kleak_missed : NULL;

	a.tgid = id >> 32;
	a.pid = (__u32)id;
	if (!ev->wanted || ev->bytes < min_size || ev->bytes > max_size || !task_wanted(a.tgid)) {
		kleak_count(c, KLEAK_CNT_ALLOC_FILTERED);
		kleak_drop_stale(live, c, key, missed);
		return;
	}
	a.ts_ns = bpf_ktime_get_ns();
	a.call_site = ev->call_site;
	a.bytes_alloc = ev->bytes;
	a.bytes_req = ev->bytes_req;
	a.family = ev->family;
	a.flags = ev->flags;
	a.cache = ev->cache;
	/* Without a stack the record keeps call_site, and the error is counted. */
	if (ev->slab && stack_sample_every > 1)
		sampled_stack(ctx, &a);
	else
		a.stack_id = capture_stack(ctx, c, ev->call_site, &a.stack_err);
	if (a.stack_err)
		kleak_count_stack_error(c, a.stack_err);
	/* Reports take task names from allocations with their own stack: the
	 * sampled mode skips the copy for the others. */
	if (!(a.flags & KLEAK_ALLOC_STACK_HINT))
		bpf_get_current_comm(a.comm, sizeof(a.comm));

	kleak_put_record(live, key, &a, c, missed);
}

/* Removes the record of `key` from `live`, for every family. A free done
 * by a free program's backup (see KLEAK_FREE_PROGRAMS) is one the kernel
 * skipped for the program itself: counted as rescued. */
static __always_inline void record_free(void *live, __u32 family, __u64 key, bool rescued)
{
	struct kleak_counters *c = counters(family);

	if (!c)
		return;
	/* Counted first: each rescue is one run the kernel skipped. */
	if (rescued)
		kleak_count(c, KLEAK_CNT_FREE_RESCUED);
	/* kfree(NULL) and ZERO_SIZE_PTR (16) are traced but free nothing; no
	 * other family's address is that small. */
	if (key <= 16)
		return;
	kleak_free_record(live, c, key);
}

/* Each program takes the event's TP_PROTO as u64 slots and reads ptr, a
 * `const void *` in all four, through kleak_void_ptr_arg() (compat.bpf.h). */

/* Frees the kernel skips. A tracepoint program is not re-entered on a CPU
 * (v6.1+): a free in an interrupt that lands while kleak_kfree runs there
 * is not run for it, only counted (recursion_misses), and its record would
 * stay, a phantom leak (394 such kmem_cache frees in one run of a TCG guest
 * under scripts/vmtest, and a CI verdict of 9 leaked struct files). So each
 * free program has a backup: another program on the same event, with its
 * own recursion guard, so the kernel runs it for that nested free. The
 * program notes, per CPU, the address it frees, first thing and again last
 * (a nested run of itself, where kernels allow one, may have noted
 * another); the backup frees only an address the program has not noted,
 * i.e. an event the program was not run for, and costs a per-CPU lookup
 * otherwise. A flag the program held while it ran left the kernel's own
 * dispatch before and after it uncovered: the backup did 20 of 51 skipped
 * frees that way, where the noted address leaves no such window (18 of 18,
 * 3 of 3). A backup interrupted itself may find another address noted and
 * redo its program's free: a delete of a key already gone, harmless, but
 * counted as rescued too. kleak_freeing: per CPU, the last address each
 * free program noted. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32); /* enum kleak_free_slot */
	__type(value, __u64);
	__uint(max_entries, KLEAK_FREE_SLOTS);
} kleak_freeing SEC(".maps");

static __always_inline __u64 *noted_free(__u32 slot)
{
	return bpf_map_lookup_elem(&kleak_freeing, &slot);
}

/* The program NAME on tracepoint TP and its backup NAME_b: key_of(ctx) is
 * the address the event frees, on_free(key, rescued) frees it. */
#define KLEAK_FREE_PROGRAMS(tp, name, slot, key_of, on_free)                              \
	SEC("tp_btf/" tp)                                                                 \
	int name(__u64 *ctx)                                                              \
	{                                                                                 \
		__u64 key = key_of(ctx), *noted = noted_free(slot);                       \
                                                                                          \
		if (noted)                                                                \
			*noted = key;                                                     \
		on_free(key, false);                                                      \
		if (noted)                                                                \
			*noted = key;                                                     \
		return 0;                                                                 \
	}                                                                                 \
	SEC("tp_btf/" tp)                                                                 \
	int name##_b(__u64 *ctx)                                                          \
	{                                                                                 \
		__u64 key = key_of(ctx), *noted = noted_free(slot);                       \
                                                                                          \
		KLEAK_REFUSE_IF(KLEAK_PART_FREE_BACKUP);                                  \
		if (noted && *noted != key)                                               \
			on_free(key, true);                                               \
		return 0;                                                                 \
	}

/* A kmalloc family event's flags: reclaimable when gfp picks a reclaimable
 * kmalloc cache. */
static __always_inline __u32 kmalloc_flags(__u64 gfp_flags)
{
	return (gfp_flags & KLEAK_GFP_RECLAIMABLE) ? KLEAK_ALLOC_RECLAIMABLE : 0;
}

/* --cache of a kmalloc cache: its kmalloc_type(), or any. */
static __always_inline bool kmalloc_wanted(__u64 gfp_flags)
{
	return !kmalloc_off && (kmalloc_type < 0 || kmalloc_type_of(gfp_flags) == kmalloc_type);
}

/* kmalloc's layout. Before v6.1 (commit 2c1d697fb8ba, see compat.bpf.h)
 * kmem_cache_alloc and the _node events of both families used it too (the
 * kmem_alloc classes):
 *   (call_site, ptr, bytes_req, bytes_alloc, gfp_flags[, node])
 * with no cache pointer, so --cache NAME cannot match a kmem_cache there.
 * The loader loads these only where those events (or that layout) exist:
 * Debian's 5.10 under scripts/vmtest. */
static __always_inline void record_kmem_alloc_class(__u64 *ctx, __u32 family)
{
	struct kleak_counters *c = counters(family);
	struct alloc_event ev = {
		.key = kleak_void_ptr_arg(ctx, 1),
		.bytes = ctx[3],
		.bytes_req = (__u32)ctx[2],
		.call_site = ctx[0],
		.family = family,
		.flags = kmalloc_flags(ctx[4]),
		.wanted = family == KLEAK_FAMILY_KMALLOC ? kmalloc_wanted(ctx[4]) : !kmem_cache_off && !cache_name[0],
		.slab = true,
	};

	if (c && alloc_seen(c, ev.key))
		record_alloc(ctx, &kleak_live, c, &ev);
}

/* kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node): the
 * kmem_alloc class's layout, on every kernel. */
SEC("tp_btf/kmalloc")
int kleak_kmalloc(__u64 *ctx)
{
	KLEAK_REFUSE_IF(KLEAK_PART_CORE);
	record_kmem_alloc_class(ctx, KLEAK_FAMILY_KMALLOC);
	return 0;
}

/* kmem_cache_alloc(call_site, ptr, s, gfp_flags, node) */
SEC("tp_btf/kmem_cache_alloc")
int kleak_kc_alloc(__u64 *ctx)
{
	struct kleak_counters *c = counters(KLEAK_FAMILY_KMEM_CACHE);
	__u64 key = kleak_void_ptr_arg(ctx, 1);
	struct kmem_cache *s = (struct kmem_cache *)ctx[2];

	KLEAK_REFUSE_IF(KLEAK_PART_KMEM_CACHE);
	if (!c || !alloc_seen(c, key))
		return 0; /* s is not touched for a failed allocation */
	struct alloc_event ev = {
		.key = key,
		.bytes = kleak_cache_size(s),
		.bytes_req = kleak_cache_object_size(s),
		.call_site = ctx[0],
		.cache = (__u64)s,
		.family = KLEAK_FAMILY_KMEM_CACHE,
		.flags = kleak_cache_reclaimable(s) ? KLEAK_ALLOC_RECLAIMABLE : 0,
		.wanted = !kmem_cache_off && (!cache_name[0] || cache_name_matches(s)),
		.slab = true,
	};
	record_alloc(ctx, &kleak_live, c, &ev);
	return 0;
}

SEC("tp_btf/kmalloc_node")
int kleak_kmalloc_n(__u64 *ctx)
{
	record_kmem_alloc_class(ctx, KLEAK_FAMILY_KMALLOC);
	return 0;
}

SEC("tp_btf/kmem_cache_alloc_node")
int kleak_kc_node(__u64 *ctx)
{
	record_kmem_alloc_class(ctx, KLEAK_FAMILY_KMEM_CACHE);
	return 0;
}

SEC("tp_btf/kmem_cache_alloc")
int kleak_kc_old(__u64 *ctx)
{
	KLEAK_REFUSE_IF(KLEAK_PART_KMEM_CACHE);
	record_kmem_alloc_class(ctx, KLEAK_FAMILY_KMEM_CACHE);
	return 0;
}

/* kfree(call_site, ptr) and kmem_cache_free(call_site, ptr, s) */
static __always_inline __u64 slab_free_key(__u64 *ctx)
{
	return kleak_void_ptr_arg(ctx, 1);
}

/* kfree() frees objects of either slab family: its counts go to kmalloc's. */
static __always_inline void on_kfree(__u64 key, bool rescued)
{
	record_free(&kleak_live, KLEAK_FAMILY_KMALLOC, key, rescued);
}

static __always_inline void on_kmem_cache_free(__u64 key, bool rescued)
{
	record_free(&kleak_live, KLEAK_FAMILY_KMEM_CACHE, key, rescued);
}

KLEAK_FREE_PROGRAMS("kfree", kleak_kfree, KLEAK_FREE_KFREE, slab_free_key, on_kfree)
KLEAK_FREE_PROGRAMS("kmem_cache_free", kleak_kc_free, KLEAK_FREE_KMEM_CACHE, slab_free_key, on_kmem_cache_free)

/* ---- The bulk-free follower: slab frees with no per-object tracepoint ----
 *
 * kmem_cache_free_bulk() (and kfree_bulk(), its s == NULL form) frees an
 * array of objects without a kfree/kmem_cache_free event for any of them:
 * kvfree_rcu()'s batches, the maple tree, networking. And since v6.18 a
 * kfree_rcu() of an object whose cache has SLUB sheaves hands it to a
 * per-CPU sheaf (__kfree_rcu_sheaf), which after the grace period goes
 * back to the cache as a whole, again without an event (on Debian's 7.2
 * every cache has sheaves). Without these programs each such object
 * stays recorded until an allocation reuses its address: a phantom leak
 * on a cold machine, counted as a missed free only later. The loader
 * loads them where the kernel's BTF has the function, as one optional
 * part. Both run before the objects are gone (fentry) or once the sheaf
 * has taken the object (fexit, ret true): by then the caller has let go
 * of it, so it is freed for kleak's purpose. */
/* kmem_cache_free_bulk(s, size, p). p, a `void **`, is copied with a
 * helper: kernels before multi-level pointer arguments (Debian's 6.12
 * under scripts/vmtest) refuse its direct load ("invalid bpf_context
 * access off=16 size=8"). */
SEC("fentry/kmem_cache_free_bulk")
int kleak_free_bulk(__u64 *ctx)
{
	struct kmem_cache *s = (struct kmem_cache *)ctx[0];
	__u64 size = ctx[1];
	void **p = 0;
	struct kleak_counters *c = counters(s ? KLEAK_FAMILY_KMEM_CACHE : KLEAK_FAMILY_KMALLOC);

	bpf_probe_read_kernel(&p, sizeof(p), &ctx[2]);

	KLEAK_REFUSE_IF(KLEAK_PART_BULK_FREE);
	if (!c)
		return 0;
	if (size > KLEAK_BULK_FREE_MAX)
		kleak_count_n(c, KLEAK_CNT_FREE_BULK_UNFOLLOWED, size - KLEAK_BULK_FREE_MAX);
	for (__u32 i = 0; i < KLEAK_BULK_FREE_MAX; i++) {
		__u64 key = 0;

		if (i >= size || bpf_probe_read_kernel(&key, sizeof(key), &p[i]))
			break;
		if (key > 16 && kleak_free_record(&kleak_live, c, key))
			kleak_count(c, KLEAK_CNT_FREE_BULK);
	}
	return 0;
}

/* __kfree_rcu_sheaf(s, obj) returns true when the sheaf took obj. */
SEC("fexit/__kfree_rcu_sheaf")
int kleak_rcu_sheaf(__u64 *ctx)
{
	struct kleak_counters *c = counters(KLEAK_FAMILY_KMALLOC);
	bool taken = (bool)ctx[2];
	__u64 obj = 0;

	KLEAK_REFUSE_IF(KLEAK_PART_BULK_FREE);
	bpf_probe_read_kernel(&obj, sizeof(obj), &ctx[1]);
	if (c && taken && kleak_free_record(&kleak_live, c, obj))
		kleak_count(c, KLEAK_CNT_FREE_BULK);
	return 0;
}

/* With follow_tasks, a followed process's children are followed too. Only
 * loaded in that mode. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(kleak_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	__u32 one = 1;
	struct kleak_counters *c;

	if (ptgid == ctgid || !bpf_map_lookup_elem(&kleak_tasks, &ptgid))
		return 0; /* a new thread, or not followed */
	if (bpf_map_update_elem(&kleak_tasks, &ctgid, &one, BPF_ANY)) {
		c = counters(KLEAK_FAMILY_KMALLOC);
		if (c)
			kleak_count(c, KLEAK_CNT_TASKS_FULL);
	}
	return 0;
}

/* ... and forgotten when their whole thread group is gone, before the
 * parent can reap it and free the PID: pid_max is 32768 on many machines,
 * and a later, unrelated process with a reused PID would otherwise be
 * followed (a CI run once reported a ctest child's exec and pipe page as
 * the workload's). do_exit() decrements signal->live before this event
 * in every kernel kleak supports, so 0 means the group is dead. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(kleak_exit, struct task_struct *p)
{
	__u32 tgid = BPF_CORE_READ(p, tgid);

	KLEAK_REFUSE_IF(KLEAK_PART_EXIT_FOLLOWER);
	if (BPF_CORE_READ(p, signal, live.counter) == 0)
		bpf_map_delete_elem(&kleak_tasks, &tgid);
	return 0;
}

/* ---- The module follower: modules that come and go ----
 *
 * kleak_modules: every load (and the unload of a module loaded before
 * kleak), keyed by its time; kleak_mods_now: the loaded ones, by text
 * base, to find a load's record at its unload. LRU: a session that sees
 * more than KLEAK_MAX_MODULES loads keeps the newest. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, struct kleak_module);
	__uint(max_entries, KLEAK_MAX_MODULES);
} kleak_modules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);   /* text_base */
	__type(value, __u64); /* its kleak_modules key */
	__uint(max_entries, KLEAK_MAX_MODULES);
} kleak_mods_now SEC(".maps");

/* Before v6.4 (commit ac3b43283923) a module's memory was two layouts. */
struct module_layout___old {
	void *base;
	unsigned int size;
	unsigned int text_size;
} __attribute__((preserve_access_index));

struct module___old {
	struct module_layout___old core_layout;
	struct module_layout___old init_layout;
} __attribute__((preserve_access_index));

static __always_inline void module_record(struct module *mod, struct kleak_module *m)
{
	if (bpf_core_field_exists(mod->mem)) {
		m->text_base = (__u64)BPF_CORE_READ(mod, mem[MOD_TEXT].base);
		m->text_size = BPF_CORE_READ(mod, mem[MOD_TEXT].size);
		m->init_base = (__u64)BPF_CORE_READ(mod, mem[MOD_INIT_TEXT].base);
		m->init_size = BPF_CORE_READ(mod, mem[MOD_INIT_TEXT].size);
	} else {
		struct module___old *old = (void *)mod;

		m->text_base = (__u64)BPF_CORE_READ(old, core_layout.base);
		m->text_size = BPF_CORE_READ(old, core_layout.text_size);
		m->init_base = (__u64)BPF_CORE_READ(old, init_layout.base);
		m->init_size = BPF_CORE_READ(old, init_layout.text_size);
	}
	bpf_probe_read_kernel_str(m->name, sizeof(m->name), mod->name);
}

SEC("tp_btf/module_load")
int BPF_PROG(kleak_mod_load, struct module *mod)
{
	struct kleak_module m = {};
	__u64 key = bpf_ktime_get_ns();

	KLEAK_REFUSE_IF(KLEAK_PART_MODULE_FOLLOWER);
	module_record(mod, &m);
	m.load_ns = key;
	if (bpf_map_update_elem(&kleak_modules, &key, &m, BPF_ANY) == 0)
		bpf_map_update_elem(&kleak_mods_now, &m.text_base, &key, BPF_ANY);
	return 0;
}

SEC("tp_btf/module_free")
int BPF_PROG(kleak_mod_free, struct module *mod)
{
	struct kleak_module m = {}, *loaded;
	__u64 now = bpf_ktime_get_ns(), *key;

	KLEAK_REFUSE_IF(KLEAK_PART_MODULE_FOLLOWER);
	module_record(mod, &m);
	key = bpf_map_lookup_elem(&kleak_mods_now, &m.text_base);
	loaded = key ? bpf_map_lookup_elem(&kleak_modules, key) : 0;
	if (loaded) {
		loaded->free_ns = now;
		bpf_map_delete_elem(&kleak_mods_now, &m.text_base);
		return 0;
	}
	m.free_ns = now; /* loaded before kleak: its unload alone */
	bpf_map_update_elem(&kleak_modules, &now, &m, BPF_ANY);
	return 0;
}

/* ---- Families beyond slab: page allocator, percpu, vmalloc ----
 *
 * Each has a live map of its own, so struct page pointers, __percpu
 * pointers and vmap addresses never share a key space with slab objects
 * (or with each other), and counters of its own (kleak_counters[family]). Their
 * programs are loaded only when --family asks for them: without them the
 * slab hot path above is exactly what it was. Records are struct
 * kleak_alloc, so reports group and symbolize them like slab records. */

/* Set by the loader before load (user/probe/loader.cpp). */
const volatile __u64 gfp_movable = 0x08; /* __GFP_MOVABLE, resolved from BTF */
const volatile __u32 page_shift = 12;
const volatile __u32 nr_possible_cpus = 1;
/* Text ranges of the slab and large-kmalloc page paths (kallsyms). */
const volatile __u64 page_skip_lo[KLEAK_PAGE_SKIP_RANGES] = {};
const volatile __u64 page_skip_hi[KLEAK_PAGE_SKIP_RANGES] = {};
const volatile __u32 page_skip_kind[KLEAK_PAGE_SKIP_RANGES] = {};

/* max_entries: 1 while the family is off, else --max-allocs (loader). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64); /* struct page * of the first page */
	__type(value, struct kleak_alloc);
	__uint(max_entries, 1);
} kleak_pages SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64); /* the __percpu pointer alloc_percpu() returned */
	__type(value, struct kleak_alloc);
	__uint(max_entries, 1);
} kleak_percpu SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64); /* va_start of the vmap area */
	__type(value, struct kleak_alloc);
	__uint(max_entries, 1);
} kleak_vmalloc SEC(".maps");

/* Which page path this allocation came through, from its innermost frames:
 * KLEAK_PAGE_SKIP_SLAB for a page that backs a slab (allocate_slab: each
 * object on it is a kmalloc/kmem_cache record already),
 * KLEAK_PAGE_SKIP_KMALLOC for a kmalloc too large for a slab cache (a
 * kmalloc record, freed by kfree), 0 for any other. A short walk (16
 * frames) on the BPF stack, so excluded pages never reach the stack store. */
static __always_inline __u32 page_skip_of(void *ctx)
{
	__u64 ips[KLEAK_PAGE_SKIP_FRAMES];
	long n;

	if (!page_skip_lo[0])
		return 0;
	n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
	if (n <= 0)
		return 0;
	n /= sizeof(__u64);
	for (int i = 0; i < KLEAK_PAGE_SKIP_FRAMES; i++) {
		if (i >= n)
			break;
		for (int r = 0; r < KLEAK_PAGE_SKIP_RANGES; r++) {
			if (!page_skip_lo[r])
				break;
			if (ips[i] >= page_skip_lo[r] && ips[i] < page_skip_hi[r])
				return page_skip_kind[r];
		}
	}
	return 0;
}

/* mm_page_alloc(page, order, gfp_flags, migratetype), every kernel with
 * BTF. Which pages are leak candidates:
 * - not __GFP_MOVABLE ones (migratetype MIGRATE_MOVABLE): the kernel only
 *   sets it on pages it can migrate, i.e. anonymous user memory
 *   (GFP_HIGHUSER_MOVABLE), page cache (mapping_gfp_mask() is movable by
 *   default), zsmalloc and balloon pages; all have an owner that frees them
 *   (unmap, reclaim), and they would drown the report. Checked before any
 *   stack walk: the flag is in the event.
 * - not pages backing a slab or a large kmalloc: their objects are tracked
 *   by the slab family (page_skip_of).
 * - page-cache pages that are not movable (e.g. a block device's mapping,
 *   GFP_USER) are dropped when mm_filemap_add_to_page_cache adds them.
 * Kept: alloc_pages()/__get_free_pages() of drivers and subsystems (pipe
 * buffers are GFP_HIGHUSER | __GFP_ACCOUNT: not movable, kept), page
 * tables, socket page frags. */
/* A page that is not a leak candidate: counted under `excl` (the count,
 * then its bytes at excl + 1), never recorded. */
static __always_inline void exclude_page(struct kleak_counters *c, int excl, __u64 key, __u64 bytes)
{
	kleak_count(c, excl);
	kleak_count_n(c, excl + 1, bytes);
	kleak_drop_stale(&kleak_pages, c, key, NULL);
}

SEC("tp_btf/mm_page_alloc")
int BPF_PROG(kleak_pg_alloc, struct page *page, unsigned int order, gfp_t gfp_flags)
{
	struct kleak_counters *c = counters(KLEAK_FAMILY_PAGE);
	struct alloc_event ev = {
		.key = (__u64)page,
		.bytes = 1ULL << ((page_shift + order) & 63),
		.bytes_req = order,
		.family = KLEAK_FAMILY_PAGE,
		.wanted = true,
	};
	__u32 skip;

	KLEAK_REFUSE_IF(KLEAK_PART_PAGE);
	if (!c || !alloc_seen(c, ev.key))
		return 0;
	if (gfp_flags & gfp_movable) {
		exclude_page(c, KLEAK_CNT_EXCL_MOVABLE, ev.key, ev.bytes);
		return 0;
	}
	skip = page_skip_of(ctx);
	if (skip == KLEAK_PAGE_SKIP_SLAB)
		exclude_page(c, KLEAK_CNT_EXCL_SLAB, ev.key, ev.bytes);
	else if (skip == KLEAK_PAGE_SKIP_KMALLOC)
		exclude_page(c, KLEAK_CNT_EXCL_KMALLOC, ev.key, ev.bytes);
	else
		record_alloc(ctx, &kleak_pages, c, &ev);
	return 0;
}

/* mm_page_free(page, order): every page freed, from free_pages_prepare(),
 * whichever path (single, per-CPU list, batched) frees it. Pages freed as a
 * list (release_pages(), free_unref_folios()) also pass
 * mm_page_free_batched, but after free_pages_prepare(): on 6.18 all 11560
 * batched frees of a file-write-and-delete run had an mm_page_free of the
 * same pfn (tracefs, both events on). So that event is not traced: it
 * would only double the cost of batched frees. */
static __always_inline __u64 first_arg(__u64 *ctx)
{
	return ctx[0];
}

static __always_inline void on_page_free(__u64 key, bool rescued)
{
	record_free(&kleak_pages, KLEAK_FAMILY_PAGE, key, rescued);
}

KLEAK_FREE_PROGRAMS("mm_page_free", kleak_pg_free, KLEAK_FREE_PAGE, first_arg, on_page_free)

/* mm_filemap_add_to_page_cache(folio) (a struct page * before v5.16): a
 * page that joins the page cache is reclaimable file data, not a leak. */
SEC("tp_btf/mm_filemap_add_to_page_cache")
int kleak_pg_cache(__u64 *ctx)
{
	struct kleak_counters *c = counters(KLEAK_FAMILY_PAGE);
	__u64 key = ctx[0];
	struct kleak_alloc *a;
	__u64 bytes;

	if (!c)
		return 0;
	a = bpf_map_lookup_elem(&kleak_pages, &key);
	if (!a)
		return 0;
	bytes = a->bytes_alloc; /* copied before the delete */
	if (!map_result(bpf_map_delete_elem(&kleak_pages, &key))) {
		kleak_count(c, KLEAK_CNT_EXCL_PAGECACHE);
		kleak_count_n(c, KLEAK_CNT_EXCL_PAGECACHE_BYTES, bytes);
	}
	return 0;
}

/* percpu_alloc_percpu: v5.19 ("percpu: improve percpu_alloc_percpu event
 * trace") put call_site first and added
 * bytes_alloc (what the allocation costs across all possible CPUs, with
 * memcg's per-object overhead) and gfp_flags:
 *   (call_site, reserved, is_atomic, size, align, base_addr, off, ptr,
 *    bytes_alloc, gfp_flags)
 * before:
 *   (reserved, is_atomic, size, align, base_addr, off, ptr)
 * where the cost is size x possible CPUs. The layout is a CO-RE constant:
 * the verifier never walks the other branch. */
SEC("tp_btf/percpu_alloc_percpu")
int kleak_pc_alloc(__u64 *ctx)
{
	struct kleak_counters *c = counters(KLEAK_FAMILY_PERCPU);
	struct alloc_event ev = { .family = KLEAK_FAMILY_PERCPU, .wanted = true };

	KLEAK_REFUSE_IF(KLEAK_PART_PERCPU);
	if (!c)
		return 0;
	if (bpf_core_field_exists(struct trace_event_raw_percpu_alloc_percpu, bytes_alloc)) {
		ev.call_site = ctx[0];
		ev.bytes_req = (__u32)ctx[3];
		ev.key = kleak_void_ptr_arg(ctx, 7);
		ev.bytes = ctx[8];
	} else {
		ev.bytes_req = (__u32)ctx[2];
		ev.key = kleak_void_ptr_arg(ctx, 6);
		ev.bytes = ctx[2] * nr_possible_cpus;
	}
	if (alloc_seen(c, ev.key))
		record_alloc(ctx, &kleak_percpu, c, &ev);
	return 0;
}

/* percpu_free_percpu(base_addr, off, ptr), unchanged since v4.13. */
static __always_inline __u64 percpu_free_key(__u64 *ctx)
{
	return kleak_void_ptr_arg(ctx, 2);
}

static __always_inline void on_percpu_free(__u64 key, bool rescued)
{
	record_free(&kleak_percpu, KLEAK_FAMILY_PERCPU, key, rescued);
}

KLEAK_FREE_PROGRAMS("percpu_free_percpu", kleak_pc_free, KLEAK_FREE_PERCPU, percpu_free_key, on_percpu_free)

/* alloc_vmap_area(addr, size, align, vstart, vend, failed), from the
 * vmalloc trace events added after v6.1 (Debian's 6.12 has them, its 6.1
 * does not: scripts/vmtest): every vmap area,
 * i.e. vmalloc(), vmap(), ioremap(), vm_map_ram() blocks. size includes
 * vmalloc's guard page. */
SEC("tp_btf/alloc_vmap_area")
int kleak_va_alloc(__u64 *ctx)
{
	struct kleak_counters *c = counters(KLEAK_FAMILY_VMALLOC);
	struct alloc_event ev = {
		.key = (int)ctx[5] ? 0 : ctx[0], /* failed: no area */
		.bytes = ctx[1],
		.bytes_req = (__u32)ctx[1],
		.family = KLEAK_FAMILY_VMALLOC,
		.wanted = true,
	};

	KLEAK_REFUSE_IF(KLEAK_PART_VMALLOC);
	if (c && alloc_seen(c, ev.key))
		record_alloc(ctx, &kleak_vmalloc, c, &ev);
	return 0;
}

/* free_vmap_area_noflush(va_start, nr_lazy, nr_lazy_max): the area is
 * unmapped and its pages already freed (vfree()); only the address range
 * waits for a lazy purge, which is not memory held. */
static __always_inline void on_vmap_free(__u64 key, bool rescued)
{
	record_free(&kleak_vmalloc, KLEAK_FAMILY_VMALLOC, key, rescued);
}

KLEAK_FREE_PROGRAMS("free_vmap_area_noflush", kleak_va_free, KLEAK_FREE_VMALLOC, first_arg, on_vmap_free)

/* Run on demand with BPF_PROG_TEST_RUN, never attached. bpf_probe_read_kernel
 * cannot crash the kernel: a bad address is a fault, reported as such. */
SEC("raw_tp")
int kleak_peek_run(void *ctx)
{
	KLEAK_REFUSE_IF(KLEAK_PART_PEEK);
	for (__u32 i = 0; i < KLEAK_PEEK_SLOTS; i++) {
		__u32 key = i;
		struct kleak_peek_slot *slot = bpf_map_lookup_elem(&kleak_peek, &key);
		struct kleak_alloc *live;
		__u64 len; /* 64-bit: a 32-bit copy would lose the bound (clang 14) */

		if (!slot)
			break;
		if (slot->status != KLEAK_PEEK_ASKED)
			continue;
		live = bpf_map_lookup_elem(&kleak_live, &slot->addr);
		if (!live) {
			slot->status = KLEAK_PEEK_GONE;
			slot->len = 0;
			continue;
		}
		len = slot->len;
		if (len > live->bytes_alloc)
			len = live->bytes_alloc;
		if (len > KLEAK_PEEK_MAX_BYTES)
			len = KLEAK_PEEK_MAX_BYTES;
		slot->len = len;
		/* Keep the bound on the register the helper gets: clang would
		 * otherwise reuse a copy the verifier knows nothing about. */
		barrier_var(len);
		if (len > KLEAK_PEEK_MAX_BYTES)
			continue;
		if (bpf_probe_read_kernel(slot->data, len, (const void *)slot->addr)) {
			slot->status = KLEAK_PEEK_FAULT;
			continue;
		}
		/* A free during the read leaves bytes of a reused object. */
		slot->status = bpf_map_lookup_elem(&kleak_live, &slot->addr) ? KLEAK_PEEK_OK : KLEAK_PEEK_FREED;
	}
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";

