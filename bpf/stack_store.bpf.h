/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* kleak's own stack store, shared by the kernel tracer (kleak.bpf.c) and
 * the user-space one (kleak_user.bpf.c).
 *
 * Stacks are keyed by a 64-bit hash of their frames. Not a STACK_TRACE map:
 * that one hashes into a fixed bucket array, and a stack whose bucket holds
 * another stack gets -EEXIST on every capture, for good (171 of them in a
 * minute of this machine's normal load).
 *
 * The maps are passed in: each object declares its own, with a value of
 * struct kleak_stack, and a one-entry per-CPU array of the same type to
 * capture into (too large for the BPF stack). */
#ifndef KLEAK_STACK_STORE_BPF_H
#define KLEAK_STACK_STORE_BPF_H

#include <bpf/bpf_helpers.h>

#ifndef EFAULT
#define EFAULT 14
#endif
#ifndef ENOMEM
#define ENOMEM 12
#endif
#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef E2BIG
#define E2BIG 7
#endif
#ifndef ENOENT
#define ENOENT 2
#endif

/* bpf_get_stack()'s skip for kernel stacks: the first frame, the return
 * address into the program, differs between the places in it that walk. */
#define KLEAK_STACK_SKIP 1

/* Map update/delete results are compared as int: until v6.4 (commit
 * d7ba4cc900bf, "bpf: return long from bpf_map_ops funcs") the map ops
 * returned int, and the verifier turns these helpers into direct calls, so
 * the upper half of the 64-bit result is not a sign extension (-ENOENT read
 * as 0xfffffffe; seen on Debian's 6.1 under scripts/vmtest). */
static __always_inline int map_result(long ret)
{
	return (int)ret;
}

/* Captures the current stack (kernel, or user with BPF_F_USER_STACK in
 * `flags`) into `stacks`. Returns its key, or 0 with *err set to -errno
 * (-ENOMEM also when `stacks` is full). */
static __always_inline __u64 kleak_store_stack(void *ctx, void *scratch, void *stacks, __u64 flags,
					       int *err)
{
	__u32 zero = 0;
	struct kleak_stack *st = bpf_map_lookup_elem(scratch, &zero);
	__u64 h = 0xcbf29ce484222325ULL; /* FNV-1a offset basis */
	long n;

	if (!st) {
		*err = -ENOMEM;
		return 0;
	}
	n = bpf_get_stack(ctx, st->ips, sizeof(st->ips), flags);
	if (n <= 0) {
		*err = n < 0 ? (int)n : -EFAULT;
		return 0;
	}
	st->nr = n / sizeof(__u64);
	for (__u32 i = 0; i < KLEAK_MAX_STACK_DEPTH; i++) {
		if (i >= st->nr)
			break;
		h = (h ^ st->ips[i]) * 0x100000001b3ULL; /* FNV-1a, a frame at a time */
	}
	h ^= h >> 29; /* the low bits pick the hash bucket: mix the high ones in */
	if (!h)
		h = 1;
	if (!bpf_map_lookup_elem(stacks, &h)) {
		int ret = map_result(bpf_map_update_elem(stacks, &h, st, BPF_NOEXIST));

		if (ret && ret != -EEXIST) { /* -EEXIST: another CPU stored it */
			*err = ret == -E2BIG ? -ENOMEM : ret;
			return 0;
		}
	}
	*err = 0;
	return h;
}

/* The sampled mode's per-CPU cache of call sites: direct-mapped, so one
 * inlined array access per allocation decides whether its site is new.
 * Each object declares a one-entry per-CPU array of it. */
struct kleak_site_cache {
	struct {
		__u64 call_site;
		__u64 stack_id; /* last stack captured there on this CPU */
	} slot[KLEAK_SITE_CACHE_SLOTS];
};

/* The sampled (low-overhead) mode: captures the stack when `site` is new to
 * this CPU's cache in `sites`, else with probability 1/`every`; otherwise
 * returns the stack last captured at `site` and sets *hint (the caller
 * flags the record KLEAK_ALLOC_STACK_HINT). Errors as kleak_store_stack. */
static __always_inline __u64 kleak_sampled_stack(void *ctx, void *sites, void *scratch, void *stacks,
						 __u64 flags, __u64 site, __u32 every, bool *hint,
						 int *err)
{
	__u32 zero = 0;
	struct kleak_site_cache *sc = bpf_map_lookup_elem(sites, &zero);
	__u32 idx = (__u32)((site >> 4) ^ (site >> 16)) & (KLEAK_SITE_CACHE_SLOTS - 1);
	__u64 id;

	*hint = false;
	if (!sc) {
		*err = -ENOMEM;
		return 0;
	}
	if (sc->slot[idx].call_site == site && sc->slot[idx].stack_id && bpf_get_prandom_u32() % every) {
		*hint = true;
		*err = 0;
		return sc->slot[idx].stack_id;
	}
	id = kleak_store_stack(ctx, scratch, stacks, flags, err);
	if (*err)
		return 0;
	sc->slot[idx].call_site = site;
	sc->slot[idx].stack_id = id;
	return id;
}

#endif /* KLEAK_STACK_STORE_BPF_H */
