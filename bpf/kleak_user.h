/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The ABI of kleak_user.bpf.c (user-space allocations, traced with uprobes)
 * shared with user space. It builds on kleak.h: the live map holds the same
 * struct kleak_alloc, the stack map the same struct kleak_stack, and the
 * counters are the same struct kleak_counters with the same indices, so
 * snapshots, grouping and reports are one code path for both tracers.
 *
 * Same rules as kleak.h: fixed-width types, explicit padding, sizes checked
 * by static_assert on the C++ side (user/model/abi.h). */
#ifndef KLEAK_USER_ABI_H
#define KLEAK_USER_ABI_H

#include "kleak.h"

/* The allocator functions kleak_user.bpf.c understands. Each attached
 * uprobe carries one in its BPF cookie (low byte), with the traced
 * process's slot above it (KLEAK_USER_COOKIE). */
enum kleak_user_fn {
	KLEAK_UFN_MALLOC = 0,
	KLEAK_UFN_CALLOC,
	KLEAK_UFN_REALLOC,
	KLEAK_UFN_REALLOCARRAY,
	KLEAK_UFN_POSIX_MEMALIGN,
	KLEAK_UFN_ALIGNED_ALLOC,
	KLEAK_UFN_MEMALIGN,
	KLEAK_UFN_VALLOC,
	KLEAK_UFN_PVALLOC,
	KLEAK_UFN_MMAP,
	KLEAK_UFN_MREMAP,
	KLEAK_UFN_FREE,
	KLEAK_UFN_MUNMAP,
	KLEAK_UFN_MAX,
};

#define KLEAK_USER_COOKIE(slot, fn) (((__u64)(slot) << 8) | (__u64)(fn))

/* struct kleak_alloc.family of a user-space record: this base plus the
 * enum kleak_user_fn that made it. Far above the kernel families of
 * enum kleak_family, which grow from 0. */
#define KLEAK_FAMILY_USER_BASE 64

/* Live-map keys are the address with the traced process's slot (its
 * index among the -p pids, 0 for the first) in the top byte, so each
 * process has its own key space. x86-64 user addresses stay below 2^47
 * (2^56 with 5-level paging). */
#define KLEAK_USER_SLOT_SHIFT 56
#define KLEAK_USER_ADDR_MASK ((1ULL << KLEAK_USER_SLOT_SHIFT) - 1)
#define KLEAK_USER_MAX_PIDS 64

/* mmap'ed blocks are recorded in whole pages, as the kernel maps them;
 * only anonymous ones (MAP_ANONYMOUS: 0x20 on x86-64 and arm64). */
#define KLEAK_MAP_ANONYMOUS 0x20
#define KLEAK_USER_PAGE_SIZE 4096

/* Counters only the user-space tracer has, next to struct kleak_counters. */
enum kleak_user_counter {
	KLEAK_UCNT_NESTED = 0,     /* allocator calls inside another (malloc's own mmap): not recorded twice */
	KLEAK_UCNT_INFLIGHT_FULL,  /* per-thread entry map full: that allocation lost */
	KLEAK_UCNT_UNMAP_PARTIAL,  /* munmap of the head of a recorded mapping: the rest kept */
	KLEAK_UCNT_MAX,
};

struct kleak_user_counters {
	__u64 v[KLEAK_UCNT_MAX];
};

#endif /* KLEAK_USER_ABI_H */
