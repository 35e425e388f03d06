/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The verified stack cache: an exact kernel stack for an allocation without
 * walking the stack, when the stack words that walk would read are the ones
 * a previous walk read. Used by kleak.bpf.c's capture_stack().
 *
 * Why it is exact
 * ---------------
 * bpf_get_stack() from a tp_btf program unwinds (x86-64: the ORC unwinder)
 * from the helper's own frame up through this program's frame to the top of
 * the task's kernel stack. The unwinder is a deterministic function of its
 * start state and of the stack words it reads:
 *  - its start state is fixed by where this program's frame sits in the
 *    task's stack (the helper's internal frames are the same code every
 *    time), so the cache is keyed by that depth: fp_off, this program's
 *    frame pointer (r10) minus task->stack. ips[0], the return address into
 *    this program, is fixed by the program and the call in it: the cache is
 *    per object, and each tp_btf event has one kleak program.
 *  - at each frame it looks up the ORC entry of the frame's IP (kernel
 *    text, constant) and finds the caller's frame either at a constant
 *    offset from the current stack pointer (the usual case), or through a
 *    frame pointer saved on the stack (BPF programs, generated code,
 *    realigned frames), or through a pt_regs on the stack (exceptions taken
 *    in kernel mode: ip, sp, bp of the interrupted code). It reads the
 *    return address there.
 * So the words it reads are return addresses (values the walk returned) and
 * pointers into the same stack (saved frame pointers, pt_regs->sp). On a
 * walk (a miss) kleak reads the stack from its frame to the top and records
 *  (a) every position whose word equals one of the returned frames (ips[1..]),
 *      not only the first: a return address also sits in copies (the event's
 *      call_site argument, spilled registers), and which copy the unwinder
 *      read is unknown, so all of them are checked;
 *  (b) every word that points into the task's stack, as an offset from the
 *      stack's base (a saved frame pointer or pt_regs->sp).
 * A stack is cached only if every returned frame was found. On a later
 * allocation at the same call site and depth, all recorded positions are
 * read again: if each holds the recorded word, then by induction from the
 * bottom frame up, the unwinder would start in the same state, read the
 * same words at the same positions and return the same frames, so the
 * cached stack key is the stack. Any difference is a miss, and the stack is
 * walked.
 *
 * Not cached (walked every time), each counted: allocations not on the
 * task's stack (interrupts and softirqs run on the IRQ stack: fp_off out of
 * range), a cache use nested in one interrupted on the same CPU, stacks with
 * a frame the walk returned but the stack does not hold (the function-graph
 * tracer's and rethook's trampolines substitute the real return address),
 * too many words to check, a failed read.
 *
 * The check runs in KLEAK_SC_VERIFY mode too, which then also walks the
 * stack on every hit and counts each hit whose key differs (mismatches):
 * how the claim above is tested (tests/integration, bench/).
 *
 * Reading our frame's address: r10 stored into a map value and read back as
 * a number. The verifier allows that to programs loaded with CAP_PERFMON
 * (allow_ptr_leaks), which kleak needs anyway. */
#ifndef KLEAK_STACK_CACHE_BPF_H
#define KLEAK_STACK_CACHE_BPF_H

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "kleak.h"
#include "refuse.bpf.h"
#include "stack_store.bpf.h"

/* The argument above is about x86-64's ORC unwinder and its stack layout
 * (where ctx sits, what is below it): elsewhere the cache is not used. */
#if defined(__TARGET_ARCH_x86)
#define KLEAK_SC_ARCH 1
#else
#define KLEAK_SC_ARCH 0
#endif

/* THREAD_SIZE of x86-64 and arm64 without KASAN. Only bounds what is read:
 * a larger stack (KASAN doubles it) leaves its upper part unread, so its
 * stacks are not found whole and never cached; a smaller one makes the read
 * fault: not cached either. */
#define KLEAK_SC_STACK_BYTES 16384
/* The copy's room: the region is at most the whole stack, as ctx sits at
 * least KLEAK_SC_BELOW above its base. */
#define KLEAK_SC_BUF_WORDS (KLEAK_SC_STACK_BYTES / 8)
/* The region read starts this far below ctx (the tracepoint's arguments,
 * in bpf_trace_run*()'s frame): the return address into bpf_trace_run*(),
 * the walk's first frame above the program, sits a little lower. */
#define KLEAK_SC_BELOW 256
/* Words checked per cached stack: frames, their copies, stack pointers. */
#define KLEAK_SC_PAIRS 64
/* Frames a cached stack may have. */
#define KLEAK_SC_FRAMES 64
/* Open-addressing table of a walk's frames, searched per stack word. */
#define KLEAK_SC_TAB 256
#define KLEAK_SC_PROBES 8
/* KLEAK_SC_PAIRS' index flag: the word is a stack pointer, kept relative. */
#define KLEAK_SC_REL 0x8000

/* One cached stack. */
struct kleak_sc_entry {
	__u64 call_site;
	__u64 stack_id;
	__u32 fp_off; /* this program's frame, from the stack's base */
	__u16 n;      /* pairs */
	__u16 span;   /* words read from the frame up: the highest pair + 1 */
	__u16 idx[KLEAK_SC_PAIRS]; /* word index from the frame, | KLEAK_SC_REL */
	__u64 val[KLEAK_SC_PAIRS];
};

/* The cache: KLEAK_SC_WAYS-way sets of entries chosen by (call_site,
 * fp_off), per CPU: no locks, no sharing. RANDOMIZE_KSTACK_OFFSET moves
 * every syscall's stack by one of 64 depths, so a hot call site holds up
 * to 64 entries per CPU: the loader sizes the map (KLEAK_SC_SLOTS, fewer on
 * machines with many CPUs; a power of two) and the sets' mask. */
#define KLEAK_SC_SLOTS 2048

/* Per-CPU working room: the stack copy, a miss's frame table. */
struct kleak_sc_work {
	__u64 fp;   /* r10, stored as a pointer, read back as a number */
	__u64 base; /* task->stack */
	__u32 busy; /* a cache use in progress on this CPU (nesting guard) */
	__u32 gen;  /* tab_gen == gen: slot in use in this miss's table */
	__u64 lo, hi; /* range of the frames' addresses */
	__u32 span;   /* words of the stack in buf */
	__u32 victim; /* the next way a miss replaces */
	__u32 win_n;      /* captures in this window (KLEAK_SC_WINDOW) */
	__u32 win_hits;   /* ... that hit */
	__u32 pause;      /* captures left that walk without the cache */
	__u32 fill_fails; /* misses in a row whose stack could not be cached */
	__u32 fill_skip;  /* misses left that walk without trying to cache */
	__u32 start;  /* first word of the region a miss records */
	__u32 top;    /* highest word recorded */
	__u64 region_rel; /* the region's start, from the stack's base */
	__u64 first;  /* ips[0] */
	__u32 found;  /* frames seen at least once */
	__u32 frames; /* distinct frames in the table */
	__u32 bad;    /* the walk cannot be cached */
	__u64 tab_ip[KLEAK_SC_TAB];
	__u32 tab_gen[KLEAK_SC_TAB];
	__u8 tab_seen[KLEAK_SC_TAB];
	__u16 tab_kmin[KLEAK_SC_TAB]; /* the ip's first frame index */
	__u16 cpos[KLEAK_SC_FRAMES];  /* the chain: frame k's lowest copy above frame k - 1's */
	__u32 k;                      /* the chain's next frame */
	__u64 expect;                 /* its address */
	__u64 buf[KLEAK_SC_BUF_WORDS];
	__u16 frame_gen[KLEAK_SC_BUF_WORDS]; /* == (u16)gen: a frame's address is there */
};

/* What the cache works with, all owned by the object that includes this
 * header (kleak.bpf.c, built with KLEAK_STACK_CACHE): the header defines no
 * map and no constant of its own. */
struct kleak_sc_maps {
	void *cache;      /* PERCPU_ARRAY of struct kleak_sc_entry, KLEAK_SC_SLOTS */
	void *work;       /* PERCPU_ARRAY of one struct kleak_sc_work */
	void *scratch;    /* kleak_store_stack()'s */
	void *stacks;     /* ... */
	__u32 sets_mask;  /* the cache's sets - 1 (the loader sizes it) */
	__u32 mode;       /* KLEAK_SC_ON or KLEAK_SC_VERIFY */
};

static __always_inline __u32 kleak_sc_hash(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (__u32)x;
}

/* Why the cache was not used, or what it found: counted by the caller. */
enum kleak_sc_outcome {
	KLEAK_SC_HIT,
	KLEAK_SC_MISS,        /* walked, and cached */
	KLEAK_SC_UNCACHED,    /* walked, not cacheable */
	KLEAK_SC_NOT_TASK,    /* not on the task's stack: walked */
	KLEAK_SC_NESTED,      /* nested in another cache use on this CPU: walked */
	KLEAK_SC_PAUSED,      /* the cache is paused on this CPU: walked */
};

/* A CPU whose captures hit less than half the time over a window pays more
 * for misses (a fill copies and scans the stack: several walks' worth) than
 * hits save: there the cache pauses (plain walks) for a while, then learns
 * again. A cache too small for its hot paths (many CPUs sharing the 4 MiB)
 * thrashes that way. */
#define KLEAK_SC_WINDOW 4096
#define KLEAK_SC_PAUSE 65536

/* What a miss's bpf_loop callback works on. */
struct kleak_sc_scan {
	struct kleak_sc_work *w;
	struct kleak_sc_entry *e;
	const struct kleak_stack *st;
};

/* bpf_loop callback of a miss: frame i of the walk into the table. */
static long kleak_sc_add_frame(__u64 i, void *arg)
{
	struct kleak_sc_scan *scan = arg;
	struct kleak_sc_work *w = scan->w;
	const struct kleak_stack *st = scan->st;
	__u64 ip;
	__u32 h;

	if (!w || !st || i >= KLEAK_MAX_STACK_DEPTH)
		return 1;
	ip = st->ips[i];
	if (ip < w->lo)
		w->lo = ip;
	if (ip > w->hi)
		w->hi = ip;
	h = kleak_sc_hash(ip);
	for (int p = 0; p < KLEAK_SC_PROBES; p++) {
		__u32 s = (h + p) & (KLEAK_SC_TAB - 1);

		if (w->tab_gen[s] != w->gen) {
			w->tab_gen[s] = w->gen;
			w->tab_ip[s] = ip;
			w->tab_seen[s] = 0;
			w->tab_kmin[s] = i;
			w->frames++;
			return 0;
		}
		if (w->tab_ip[s] == ip)
			return 0; /* the same frame twice (recursion): one entry */
	}
	w->bad = 1; /* table too full around this hash */
	return 1;
}

/* bpf_loop callback of a miss: the chain, frame by frame upwards. */
static long kleak_sc_chain(__u64 i, void *arg)
{
	struct kleak_sc_scan *scan = arg;
	struct kleak_sc_work *w = scan->w;
	const struct kleak_stack *st = scan->st;
	__u32 k;

	if (!w || !st)
		return 1;
	i += w->start;
	if (i >= KLEAK_SC_BUF_WORDS)
		return 1;
	if (w->buf[i & (KLEAK_SC_BUF_WORDS - 1)] != w->expect)
		return 0;
	k = w->k;
	if (k >= KLEAK_SC_FRAMES || k >= st->nr)
		return 1;
	w->cpos[k] = i;
	w->k = ++k;
	if (k >= st->nr || k >= KLEAK_MAX_STACK_DEPTH)
		return 1;
	w->expect = st->ips[k];
	return 0;
}

/* bpf_loop callback of a miss: is word i the lowest copy of ips[0]? */
static long kleak_sc_find_start(__u64 i, void *arg)
{
	struct kleak_sc_scan *scan = arg;
	struct kleak_sc_work *w = scan->w;

	if (!w)
		return 1;
	if (w->buf[i & (KLEAK_SC_BUF_WORDS - 1)] != w->first)
		return 0;
	w->start = i;
	return 1;
}

/* bpf_loop callback of a miss: one stack word. */
static long kleak_sc_scan_word(__u64 i, void *arg)
{
	struct kleak_sc_scan *scan = arg;
	struct kleak_sc_work *w = scan->w;
	struct kleak_sc_entry *e = scan->e;
	__u64 word;
	__u32 n, k;

	if (!w || !e)
		return 1;
	i += w->start;
	if (i >= KLEAK_SC_BUF_WORDS)
		return 1;
	word = w->buf[i & (KLEAK_SC_BUF_WORDS - 1)];
	if (word >= w->lo && word <= w->hi) {
		__u32 h = kleak_sc_hash(word);

		for (int p = 0; p < KLEAK_SC_PROBES; p++) {
			__u32 s = (h + p) & (KLEAK_SC_TAB - 1);

			if (w->tab_gen[s] != w->gen)
				return 0; /* in the text range, not a frame */
			if (w->tab_ip[s] != word)
				continue;
			k = w->tab_kmin[s];
			/* Below the chain's previous frame: a stale copy, not read */
			if (k && k <= KLEAK_SC_FRAMES && i <= w->cpos[(k - 1) & (KLEAK_SC_FRAMES - 1)])
				return 0;
			if (!w->tab_seen[s]) {
				w->tab_seen[s] = 1;
				w->found++;
			}
			n = e->n;
			if (n >= KLEAK_SC_PAIRS) {
				w->bad = 1;
				return 1;
			}
			e->idx[n] = i;
			e->val[n] = word;
			e->n = n + 1;
			w->frame_gen[i & (KLEAK_SC_BUF_WORDS - 1)] = (__u16)w->gen;
			w->top = i;
			return 0;
		}
	}
	return 0;
}

/* bpf_loop callback of a miss, after kleak_sc_scan_word: word i, if it is
 * a stack pointer the walk may read: a frame pointer (it points just below
 * a frame's return address: a saved rbp) or a pt_regs->sp (three words above
 * a frame's address: pt_regs->ip). Other stack pointers (spilled locals)
 * change between calls on the same path and are never read by the walk. */
static long kleak_sc_scan_ptr(__u64 i, void *arg)
{
	struct kleak_sc_scan *scan = arg;
	struct kleak_sc_work *w = scan->w;
	struct kleak_sc_entry *e = scan->e;
	__u64 word, rel, k;
	__u16 gen;
	__u32 n;

	if (!w || !e)
		return 1;
	gen = (__u16)w->gen;
	i += w->start;
	if (i >= KLEAK_SC_BUF_WORDS)
		return 1;
	word = w->buf[i & (KLEAK_SC_BUF_WORDS - 1)];
	rel = word - w->base;
	if (rel >= KLEAK_SC_STACK_BYTES)
		return 0;
	k = (rel - w->region_rel) / 8 + 1; /* the word above the pointee */
	if (!((rel - w->region_rel) & 7) && rel >= w->region_rel && k < KLEAK_SC_BUF_WORDS &&
	    w->frame_gen[k & (KLEAK_SC_BUF_WORDS - 1)] == gen)
		goto record;
	if (i >= 3 && w->frame_gen[(i - 3) & (KLEAK_SC_BUF_WORDS - 1)] == gen)
		goto record;
	return 0;
record:
	n = e->n;
	if (n >= KLEAK_SC_PAIRS) {
		w->bad = 1;
		return 1;
	}
	e->idx[n] = i | KLEAK_SC_REL;
	e->val[n] = rel;
	e->n = n + 1;
	if (i > w->top)
		w->top = i;
	return 0;
}

/* x is one of the frames of the walk in st. */
static __always_inline bool kleak_sc_is_frame(const struct kleak_stack *st, __u64 x)
{
	__u32 nr = st->nr;

	for (__u32 k = 0; k < KLEAK_SC_FRAMES; k++) {
		if (k >= nr || k >= KLEAK_MAX_STACK_DEPTH)
			break;
		if (st->ips[k] == x)
			return true;
	}
	return false;
}

/* x86-64's __KERNEL_CS: pt_regs->cs of an exception taken in the kernel. */
#define KLEAK_SC_KERNEL_CS 0x10

/* A stack pointer pair at word i whose value changed to `word` (absolute):
 * does the new value look like one the unwinder follows? A frame pointer
 * it follows points just below a return-address slot (the frame's saved
 * rbp), a pt_regs->sp it follows sits three words above pt_regs->ip (a
 * frame) and two above pt_regs->cs (the kernel's). Such a change means the
 * frames above it may have moved. */
static __always_inline bool kleak_sc_moved(struct kleak_sc_work *w, const struct kleak_stack *st, __u32 i,
					   __u64 word)
{
	__u64 rel = word - w->base, k;

	if (rel >= w->region_rel && !((rel - w->region_rel) & 7)) {
		k = (rel - w->region_rel) / 8 + 1;
		if (k < w->span && k < KLEAK_SC_BUF_WORDS &&
		    kleak_sc_is_frame(st, w->buf[k & (KLEAK_SC_BUF_WORDS - 1)]))
			return true;
	}
	return i >= 3 && w->buf[(i - 2) & (KLEAK_SC_BUF_WORDS - 1)] == KLEAK_SC_KERNEL_CS &&
	       kleak_sc_is_frame(st, w->buf[(i - 3) & (KLEAK_SC_BUF_WORDS - 1)]);
}

/* bpf_loop callback of a miss whose walk returned an entry's stack: pair i
 * is kept if its word is still there. The same stack at the same depth puts
 * every frame at the same place, so each word the unwinder reads (a return
 * address, a frame pointer to a frame, pt_regs->sp of a frame) holds the
 * same value in every such walk: a pair whose word changed is not one of
 * them, and is dropped.
 *
 * That premise fails when two frames of variable size make up for each
 * other: the syscall's random stack offset (a multiple of 16) and a
 * function below it that realigns its frame to 32 or more bytes put the
 * same stack at the same depth with the frames between them moved. Then
 * the lowest frame that moved was found through a pointer the unwinder read
 * at a place that did not move (a saved frame pointer, pt_regs->sp), whose
 * value changed; the fill recorded it (it points just below a frame's slot,
 * or sits three words above pt_regs->ip), and earlier prunes, all between
 * walks of one layout, kept it. So a changed stack-pointer pair whose new
 * value is again one the unwinder would follow (kleak_sc_moved) stops the
 * prune: the entry is refilled from this walk. Other changed stack pointers
 * are stale (uninitialized locals) and are dropped: refusing those too cut
 * hits to 1% (tried). With the check, proc hits 97.8% (was 99.0%). */
static long kleak_sc_prune_pair(__u64 i, void *arg)
{
	struct kleak_sc_scan *scan = arg;
	struct kleak_sc_work *w = scan->w;
	struct kleak_sc_entry *e = scan->e;
	__u32 j;
	__u16 idx;
	__u64 word;

	if (!w || !e || i >= KLEAK_SC_PAIRS)
		return 1;
	idx = e->idx[i];
	word = w->buf[idx & (KLEAK_SC_BUF_WORDS - 1)];
	if (idx & KLEAK_SC_REL) {
		if (word - w->base != e->val[i]) {
			/* Stale stack pointers change all the time: dropped.
			 * One the unwinder may follow: not the same layout. */
			if (scan->st && kleak_sc_moved(w, scan->st, idx & ~KLEAK_SC_REL, word)) {
				w->bad = 1;
				return 1;
			}
			return 0;
		}
	} else if (word != e->val[i]) {
		return 0;
	}
	j = w->k;
	if (j >= KLEAK_SC_PAIRS)
		return 1;
	e->idx[j] = idx;
	e->val[j] = e->val[i];
	w->k = j + 1;
	return 0;
}

/* A miss: fills entry `e` from the stack the walk in `st` returned, or
 * leaves it empty (n = 0) if that stack cannot be cached. */
static __always_inline void kleak_sc_fill(struct kleak_sc_work *w, struct kleak_sc_entry *e,
					  const struct kleak_stack *st, __u64 call_site, __u32 fp_off,
					  __u64 stack_id)
{
	__u32 nr = st->nr;
	__u64 len = KLEAK_SC_STACK_BYTES - fp_off + KLEAK_SC_BELOW;
	__u64 first = st->ips[0];
	__u32 start;
	struct kleak_sc_scan scan = { .w = w, .e = e, .st = st };

	e->n = 0;
	e->call_site = 0;
	if (nr < 1 || nr > KLEAK_SC_FRAMES)
		return;
	barrier_var(len);
	if (len > sizeof(w->buf) || len < 8)
		return;
	if (w->span != len / 8)
		return; /* the read failed */
	w->gen++;
	w->lo = ~0ULL;
	w->hi = 0;
	w->found = 0;
	w->bad = 0;
	w->frames = 0;
	bpf_loop(nr, kleak_sc_add_frame, &scan, 0);
	if (w->bad)
		return;
	/* The lowest copy of the return address into the tracepoint's
	 * bpf_trace_run*() below ctx: the walk reads nothing lower. */
	w->start = KLEAK_SC_BELOW / 8;
	w->first = first;
	bpf_loop(KLEAK_SC_BELOW / 8, kleak_sc_find_start, &scan, 0);
	start = w->start;
	if (start >= KLEAK_SC_BELOW / 8)
		return;
	w->top = 0;
	w->region_rel = fp_off - KLEAK_SC_BELOW;
	w->k = 0;
	w->expect = first;
	bpf_loop(len / 8 - start, kleak_sc_chain, &scan, 0);
	if (w->k != nr)
		return;
	bpf_loop(len / 8 - start, kleak_sc_scan_word, &scan, 0);
	if (w->bad || w->found != w->frames || !e->n) {
		e->n = 0;
		return;
	}
	bpf_loop(len / 8 - start, kleak_sc_scan_ptr, &scan, 0);
	if (w->bad) {
		e->n = 0;
		return;
	}
	e->span = w->top + 1;
	e->fp_off = fp_off;
	e->stack_id = stack_id;
	e->call_site = call_site; /* last: the entry is whole */
}

/* A hit if `e` holds the stack at this depth: every recorded word is still
 * there (in w->buf, w->span words read). */
static __always_inline bool kleak_sc_check(struct kleak_sc_work *w, const struct kleak_sc_entry *e)
{
	__u32 n = e->n;

	if (e->span > w->span)
		return false;
	for (__u32 i = 0; i < KLEAK_SC_PAIRS; i++) {
		__u16 idx;
		__u64 word;

		if (i >= n)
			break;
		idx = e->idx[i];
		word = w->buf[idx & (KLEAK_SC_BUF_WORDS - 1)];
		if (idx & KLEAK_SC_REL)
			word -= w->base;
		if (word != e->val[i])
			return false;
	}
	return true;
}

/* A hit: a way of the set at `slot` holds this stack at this depth (and
 * user space has not reclaimed its stack since). */
static __always_inline bool kleak_sc_lookup(void *ctx, __u64 call_site, __u64 off, __u32 slot,
					    const struct kleak_sc_maps *m, struct kleak_sc_work *w, int *err,
					    bool *mismatch, __u64 *key)
{
	for (int way = 0; way < KLEAK_SC_WAYS; way++) {
		__u32 k = slot + way;
		struct kleak_sc_entry *e = bpf_map_lookup_elem(m->cache, &k);
		__u64 id;

		if (!e || e->call_site != call_site || e->fp_off != off || !e->n || !kleak_sc_check(w, e))
			continue;
		id = e->stack_id;
		if (!bpf_map_lookup_elem(m->stacks, &id))
			continue;
		if (m->mode == KLEAK_SC_VERIFY) {
			__u64 walked = kleak_store_stack(ctx, m->scratch, m->stacks, KLEAK_STACK_SKIP, err);

			*mismatch = !*err && walked != id;
			id = walked;
		} else {
			*err = 0;
		}
		*key = id;
		return true;
	}
	return false;
}

/* After a walk that stored `key`: a way of the set holding the same stack at
 * the same depth is pruned to the words both layouts share, and the walk is
 * cached (true). A way left half compacted by another layout becomes *e, the
 * one refilled. */
static __always_inline bool kleak_sc_prune(const struct kleak_sc_maps *m, struct kleak_sc_work *w, __u32 slot,
					   __u64 call_site, __u64 off, __u64 key, struct kleak_sc_entry **e)
{
	__u32 zero = 0;
	const struct kleak_stack *wst = bpf_map_lookup_elem(m->scratch, &zero);

	w->region_rel = off - KLEAK_SC_BELOW;
	for (int way = 0; way < KLEAK_SC_WAYS; way++) {
		__u32 k = (slot & ~(KLEAK_SC_WAYS - 1)) + way;
		struct kleak_sc_entry *pe = bpf_map_lookup_elem(m->cache, &k);
		struct kleak_sc_scan scan = { .w = w, .e = pe, .st = wst };

		if (!pe || pe->call_site != call_site || pe->fp_off != off || pe->stack_id != key || !pe->n ||
		    pe->span > w->span)
			continue;
		w->k = 0;
		w->bad = 0;
		if (!wst)
			return false;
		bpf_loop(pe->n, kleak_sc_prune_pair, &scan, 0);
		if (w->bad) {
			pe->call_site = 0;
			pe->n = 0;
			*e = pe;
			return false;
		}
		if (!w->k)
			return false; /* refill the victim */
		pe->n = w->k;
		return true;
	}
	return false;
}

/* A fill copies and scans the stack: several walks' worth. Where stacks keep
 * proving uncacheable (a tracer's trampolines in every stack, a layout this
 * file does not know), stop paying for it a while: 16 failures in a row skip
 * the next 1024 fills. */
static __always_inline void kleak_sc_refill(const struct kleak_sc_maps *m, struct kleak_sc_work *w,
					    struct kleak_sc_entry *e, __u64 call_site, __u64 off, __u64 key, int err,
					    int *outcome)
{
	__u32 zero = 0;
	const struct kleak_stack *st;

	if (w->fill_skip) {
		w->fill_skip--;
		return;
	}
	if (err)
		return;
	st = bpf_map_lookup_elem(m->scratch, &zero);
	if (!st)
		return;
	kleak_sc_fill(w, e, st, call_site, off, key);
	if (e->call_site) {
		*outcome = KLEAK_SC_MISS;
		w->fill_fails = 0;
	} else if (++w->fill_fails >= 16) {
		w->fill_fails = 0;
		w->fill_skip = 1024;
	}
}

/* kleak_cached_stack_once() with this CPU's work area `w` held (busy):
 * looks the stack up, walks and caches it on a miss. */
static __always_inline __u64 kleak_sc_capture(void *ctx, __u64 call_site, const struct kleak_sc_maps *m,
					      struct kleak_sc_work *w, int *err, int *outcome, bool *mismatch)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct kleak_sc_entry *e;
	__u32 slot;
	__u64 fp, off, key, len;

	/* ctx as a number: see the top of this file */
	asm volatile("*(u64 *)(%[p] + 0) = %[ctx]" ::[p] "r"(&w->fp), [ctx] "r"(ctx) : "memory");
	fp = *(volatile __u64 *)&w->fp;
	/* task->stack through a helper, not a direct load. A direct load of
	 * a BTF pointer field that points to a non-struct type (`void *
	 * stack`) gave a scalar until the verifier learnt (bpf-next, July
	 * 2025: "ptr_to_btf_id struct walk ending with primitive pointer",
	 * in 6.18.44-fc-v1098 here) to type it PTR_TO_MEM | MEM_RDONLY |
	 * PTR_UNTRUSTED of size 0 ("rdonly_untrusted_mem(sz=0)"): a pointer,
	 * so fp - base stays a pointer and the hash of it is refused
	 * ("pointer ^= pointer prohibited"). bpf_probe_read_kernel() gives a
	 * number on every kernel, for one 8-byte copy per capture. */
	w->base = (__u64)BPF_CORE_READ(task, stack);
	off = fp - w->base;
	if (off >= KLEAK_SC_STACK_BYTES || off < KLEAK_SC_BELOW || (off & 7)) {
		*outcome = KLEAK_SC_NOT_TASK;
		return kleak_store_stack(ctx, m->scratch, m->stacks, KLEAK_STACK_SKIP, err);
	}
	fp -= KLEAK_SC_BELOW; /* the region read starts there */
	/* KLEAK_SC_WAYS entries per (call_site, depth): paths that differ
	 * only higher up share both. Hits refresh nothing; a miss replaces
	 * the way after the one it last replaced. */
	slot = (kleak_sc_hash(call_site ^ (off << 48)) & m->sets_mask) * KLEAK_SC_WAYS;
	len = KLEAK_SC_STACK_BYTES - off + KLEAK_SC_BELOW;
	barrier_var(len);
	w->span = 0;
	if (len <= sizeof(w->buf) && !bpf_probe_read_kernel(w->buf, len, (const void *)fp))
		w->span = len / 8;
	if (kleak_sc_lookup(ctx, call_site, off, slot, m, w, err, mismatch, &key)) {
		*outcome = KLEAK_SC_HIT;
		return key;
	}
	slot += w->victim++ & (KLEAK_SC_WAYS - 1);
	e = bpf_map_lookup_elem(m->cache, &slot);
	*outcome = KLEAK_SC_UNCACHED;
	key = kleak_store_stack(ctx, m->scratch, m->stacks, KLEAK_STACK_SKIP, err);
	if (!e)
		return key;
	if (!*err && kleak_sc_prune(m, w, slot, call_site, off, key, &e)) {
		*outcome = KLEAK_SC_MISS;
		return key;
	}
	kleak_sc_refill(m, w, e, call_site, off, key, *err, outcome);
	return key;
}


/* kleak_cached_stack() without the pause. One capture at a time per CPU:
 * a capture nested in another (an interrupt's allocation) walks. */
static __always_inline __u64 kleak_cached_stack_once(void *ctx, __u64 call_site, const struct kleak_sc_maps *m,
						int *err, int *outcome, bool *mismatch)
{
	__u32 zero = 0;
	struct kleak_sc_work *w = bpf_map_lookup_elem(m->work, &zero);
	__u64 key;

	KLEAK_REFUSE_IF(KLEAK_PART_STACK_CACHE);
	*mismatch = false;
	if (!w || w->busy) {
		*outcome = w ? KLEAK_SC_NESTED : KLEAK_SC_UNCACHED;
		return kleak_store_stack(ctx, m->scratch, m->stacks, KLEAK_STACK_SKIP, err);
	}
	w->busy = 1;
	key = kleak_sc_capture(ctx, call_site, m, w, err, outcome, mismatch);
	w->busy = 0;
	return key;
}

/* kleak_store_stack() (stack_store.bpf.h) through the cache. *outcome says
 * what happened; in KLEAK_SC_VERIFY mode *mismatch is set when a hit's key
 * differs from the walk's (the walk's key is returned). */
static __always_inline __u64 kleak_cached_stack(void *ctx, __u64 call_site, const struct kleak_sc_maps *m,
						int *err, int *outcome, bool *mismatch)
{
	__u32 zero = 0;
	struct kleak_sc_work *w = bpf_map_lookup_elem(m->work, &zero);
	__u64 key;

	if (w && !w->busy && w->pause) {
		w->pause--;
		*mismatch = false;
		*outcome = KLEAK_SC_PAUSED;
		return kleak_store_stack(ctx, m->scratch, m->stacks, KLEAK_STACK_SKIP, err);
	}
	key = kleak_cached_stack_once(ctx, call_site, m, err, outcome, mismatch);
	if (!w || *outcome > KLEAK_SC_UNCACHED)
		return key; /* not a lookup: nothing learnt */
	w->win_n++;
	if (*outcome == KLEAK_SC_HIT)
		w->win_hits++;
	if (w->win_n >= KLEAK_SC_WINDOW) {
		if (w->win_hits * 2 < w->win_n)
			w->pause = KLEAK_SC_PAUSE;
		w->win_n = 0;
		w->win_hits = 0;
	}
	return key;
}

#endif /* KLEAK_STACK_CACHE_BPF_H */
