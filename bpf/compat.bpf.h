/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Kernel-version drift, in one place.
 *
 * kleak attaches BTF-enabled raw tracepoints, whose arguments are the
 * TP_PROTO of each event, so layouts matter where a prototype changed:
 *
 * - kmalloc(call_site, ptr, bytes_req, bytes_alloc, gfp_flags, node) and
 *   kmem_cache_alloc(call_site, ptr, s, gfp_flags, node) date from
 *   v6.1, commit 2c1d697fb8ba ("mm/slab_common: drop kmem_alloc & avoid
 *   dereferencing fields when not using"), which also folded kmalloc_node
 *   and kmem_cache_alloc_node into them. Older layouts are a later step.
 * - kmem_cache_free(call_site, ptr, s): v5.12, commit 3544de8ee6e4
 *   ("mm, tracing: record slab name for kmem_cache_free()"); only ptr is
 *   read here, which sits second in every version.
 * - The verifier, not the layout: until v6.16, commit 1271a40eeafa ("bpf:
 *   Allow access to const void pointer arguments in tracing programs"), a
 *   direct load of a tp_btf argument typed `const void *` -- the ptr of all
 *   four events -- fails to load: "func 'kmalloc' arg1 type UNKNOWN is not
 *   a struct" (seen on Debian's 6.1 and 6.12 under scripts/vmtest). The
 *   loader probes for it and sets direct_ptr_args (below).
 */
#ifndef KLEAK_COMPAT_BPF_H
#define KLEAK_COMPAT_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "refuse.bpf.h"

/* Set by the loader when this kernel's verifier accepts a direct load of a
 * `const void *` tp_btf argument (user/probe/loader.cpp probes it). With the flag
 * a constant of frozen .rodata, the verifier never walks the branch a kernel
 * would reject. */
const volatile bool direct_ptr_args = 0;

/* Bytes a kmem_cache hands out per object, and what callers asked for. `s`
 * is a tp_btf argument, a BTF pointer: direct loads (PROBE_MEM, inlined)
 * instead of a bpf_probe_read_kernel() call each; CO-RE still relocates
 * the offsets. */
static __always_inline __u64 kleak_cache_size(const struct kmem_cache *s)
{
	return s->size;
}

static __always_inline __u32 kleak_cache_object_size(const struct kmem_cache *s)
{
	return s->object_size;
}

/* Argument n of a tp_btf program when it is typed `const void *`: a direct
 * load where the kernel allows it (v6.16+); before, a copy of the raw
 * 8-byte slot with a helper (~20 ns more per event on this VM), since those
 * kernels reject the load (see above). The load is written in asm: the
 * verifier takes only ctx + constant offset, and clang would otherwise share
 * &ctx[n] between the two branches. Passing a ctx-derived address to the
 * helper needs allow_ptr_leaks, i.e. CAP_PERFMON, which kleak needs anyway.
 * A macro, so that n is a constant for the asm. */
#define kleak_void_ptr_arg(ctx, n)                                                         \
	({                                                                                 \
		__u64 __v = 0;                                                             \
		if (direct_ptr_args) {                                                     \
			KLEAK_REFUSE_IF(KLEAK_PART_DIRECT_PTR);                            \
			asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(__v) : "r"(ctx), "i"((n) * 8)); \
		} else {                                                                   \
			bpf_probe_read_kernel(&__v, sizeof(__v), &(ctx)[n]);               \
		}                                                                          \
		__v;                                                                       \
	})

/* SLAB_RECLAIM_ACCOUNT: 0x00020000 until v6.9, when slab flags became bits
 * of enum _slab_flag_bits whose positions depend on the kernel config
 * (e.g. bit 15 on this 6.18 build): resolve the bit from the running
 * kernel's BTF. */
static __always_inline __u32 kleak_slab_reclaim_flag(void)
{
	if (bpf_core_enum_value_exists(enum _slab_flag_bits, _SLAB_RECLAIM_ACCOUNT))
		return 1U << bpf_core_enum_value(enum _slab_flag_bits, _SLAB_RECLAIM_ACCOUNT);
	return 0x00020000U;
}

/* __GFP_RECLAIMABLE has been bit 4 (0x10) in every kernel with BTF; its
 * enum is anonymous, so it cannot be resolved by name. */
#define KLEAK_GFP_RECLAIMABLE 0x10U

static __always_inline bool kleak_cache_reclaimable(const struct kmem_cache *s)
{
	return s->flags & kleak_slab_reclaim_flag();
}

#endif /* KLEAK_COMPAT_BPF_H */
