/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Putting a record into a live map, taking it out at its free, and
 * counting both: the one path of every family of the kernel tracer
 * (kleak.bpf.c) and of the user-space one (kleak_user.bpf.c). Defines no
 * map: the live map, the counters and the missed-free sites are passed in. */
#ifndef KLEAK_RECORD_BPF_H
#define KLEAK_RECORD_BPF_H

#include <bpf/bpf_helpers.h>
#include "kleak.h"
#include "stack_store.bpf.h"

/* Atomic: programs for different events can nest on one CPU (a free in an
 * interrupt while an allocation is being recorded), and uprobe programs
 * are preemptible. */
static __always_inline void kleak_count_n(struct kleak_counters *c, int idx, __u64 n)
{
	__sync_fetch_and_add(&c->v[idx], n);
}

static __always_inline void kleak_count(struct kleak_counters *c, int idx)
{
	kleak_count_n(c, idx, 1);
}

static __always_inline void kleak_count_stack_error(struct kleak_counters *c, long err)
{
	switch (err) {
	case -EFAULT:
		kleak_count(c, KLEAK_CNT_STACK_EFAULT);
		break;
	case -ENOMEM:
		kleak_count(c, KLEAK_CNT_STACK_ENOMEM);
		break;
	default:
		kleak_count(c, KLEAK_CNT_STACK_OTHER);
	}
}

/* `stale` was live at an address the allocator just handed out again: note
 * where such objects come from in `missed` (a hash of cache or call site to
 * a count), so reports can flag their stacks. */
static __always_inline void kleak_note_missed_free(void *missed, const struct kleak_alloc *stale)
{
	__u64 key = stale->family == KLEAK_FAMILY_KMEM_CACHE ? stale->cache : stale->call_site;
	__u64 one = 1, *n;

	n = bpf_map_lookup_elem(missed, &key);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(missed, &key, &one, BPF_NOEXIST);
}

/* An allocation at `key` that is not recorded still proves a record there
 * stale: its free went past the hooks (kmem_cache_free_bulk(), a page freed
 * in an interrupt while the free program ran on that CPU, ...). Dropped,
 * and counted only if it really left the map, so live = recorded - matched
 * - missed holds. A lock-free lookup first: most addresses hold no record,
 * and a delete takes the bucket lock. `missed`: where to note it, or NULL. */
static __always_inline void kleak_drop_stale(void *live, struct kleak_counters *c, __u64 key, void *missed)
{
	struct kleak_alloc *stale = bpf_map_lookup_elem(live, &key);

	if (!stale)
		return;
	if (missed)
		kleak_note_missed_free(missed, stale);
	if (!map_result(bpf_map_delete_elem(live, &key)))
		kleak_count(c, KLEAK_CNT_MISSED_FILTERED);
}

/* Puts record `a` at `key` and counts the outcome. An address kleak still
 * holds is a record whose free went past every hook: counted (and noted in
 * `missed`, when given) and replaced; if the overwrite fails, the stale
 * record stays and is not counted as replaced. */
static __always_inline void kleak_put_record(void *live, __u64 key, const struct kleak_alloc *a,
					     struct kleak_counters *c, void *missed)
{
	int err = map_result(bpf_map_update_elem(live, &key, a, BPF_NOEXIST));

	if (err == -EEXIST) {
		struct kleak_alloc *stale = bpf_map_lookup_elem(live, &key);

		if (stale && missed)
			kleak_note_missed_free(missed, stale);
		err = map_result(bpf_map_update_elem(live, &key, a, BPF_ANY));
		if (!err)
			kleak_count(c, KLEAK_CNT_ALLOC_REPLACED);
	}
	if (!err)
		kleak_count(c, KLEAK_CNT_ALLOC_RECORDED);
	else if (err == -E2BIG)
		kleak_count(c, KLEAK_CNT_LIVE_FULL);
	else
		kleak_count(c, KLEAK_CNT_LIVE_ERROR);
}

/* Takes the record of `key` out at its free and counts it. True when there
 * was one. */
static __always_inline bool kleak_free_record(void *live, struct kleak_counters *c, __u64 key)
{
	int err;

	kleak_count(c, KLEAK_CNT_FREE_SEEN);
	err = map_result(bpf_map_delete_elem(live, &key));
	if (!err) {
		kleak_count(c, KLEAK_CNT_FREE_MATCHED);
		return true;
	}
	/* e.g. -EBUSY: the bucket lock is held by a program this one
	 * interrupted on the same CPU. The record stays: a phantom. */
	if (err != -ENOENT)
		kleak_count(c, KLEAK_CNT_FREE_ERROR);
	return false;
}

#endif /* KLEAK_RECORD_BPF_H */
