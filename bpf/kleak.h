/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The one ABI shared by kleak.bpf.c and user space.
 *
 * Fixed-width types only, explicit padding, no pointers or `long`: the C++
 * side static_asserts the sizes, so a change here that breaks the layout
 * fails the build instead of corrupting reports.
 * Include after the types are defined (vmlinux.h in BPF, <linux/types.h> in
 * user space). */
#ifndef KLEAK_ABI_H
#define KLEAK_ABI_H

/* PERF_MAX_STACK_DEPTH: the most frames bpf_get_stackid() records. */
#define KLEAK_MAX_STACK_DEPTH 127
#define KLEAK_TASK_COMM_LEN 16

/* Which allocator API produced a record. */
enum kleak_family {
	KLEAK_FAMILY_KMALLOC = 0,
	KLEAK_FAMILY_KMEM_CACHE = 1,
	KLEAK_FAMILY_PAGE = 2,    /* page allocator: key struct page *, kleak_pages */
	KLEAK_FAMILY_PERCPU = 3,  /* alloc_percpu: key the __percpu pointer, kleak_percpu */
	KLEAK_FAMILY_VMALLOC = 4, /* vmap areas: key the area's start, kleak_vmalloc */
	KLEAK_FAMILY_MAX,
};

/* Address ranges of the functions through which a page allocation is not a
 * leak candidate (slab and large-kmalloc paths), found in kallsyms by user
 * space: the innermost KLEAK_PAGE_SKIP_FRAMES frames are checked. */
#define KLEAK_PAGE_SKIP_RANGES 12
#define KLEAK_PAGE_SKIP_FRAMES 16
enum kleak_page_skip_kind {
	KLEAK_PAGE_SKIP_SLAB = 1,
	KLEAK_PAGE_SKIP_KMALLOC = 2,
};

/* Indices into struct kleak_counters, one layout for every family (the
 * kleak_counters map holds one per enum kleak_family; kleak user's one):
 * every event kleak saw, and every one it lost or dropped, so reports can
 * say how complete they are. Each family uses the counters that apply. */
enum kleak_counter {
	KLEAK_CNT_ALLOC_SEEN = 0,   /* allocation events seen (incl. failed) */
	KLEAK_CNT_ALLOC_FAILED,     /* allocation returned NULL: nothing to track */
	KLEAK_CNT_ALLOC_FILTERED,   /* skipped by size/pid/self filters */
	KLEAK_CNT_ALLOC_RECORDED,   /* stored in the live map */
	KLEAK_CNT_ALLOC_REPLACED,   /* address still recorded: its free was missed */
	KLEAK_CNT_MISSED_FILTERED,  /* ... found by a filtered allocation (record dropped) */
	KLEAK_CNT_LIVE_FULL,        /* live map full (-E2BIG): allocation lost */
	KLEAK_CNT_LIVE_ERROR,       /* other live-map update error */
	KLEAK_CNT_STACK_EFAULT,     /* stack walk failed */
	KLEAK_CNT_STACK_ENOMEM,     /* stack map full: a new stack not stored */
	KLEAK_CNT_STACK_OTHER,      /* any other stack-id error */
	KLEAK_CNT_FREE_SEEN,        /* free events with a non-NULL pointer */
	KLEAK_CNT_FREE_MATCHED,     /* ... that removed a live record */
	KLEAK_CNT_TASKS_FULL,       /* followed-task set full: a child not followed */
	KLEAK_CNT_FREE_ERROR,       /* delete failed other than -ENOENT (e.g. -EBUSY) */
	/* The verified stack cache (bpf/stack_cache.bpf.h), every family's
	 * stack captures: where a capture's stack came from. */
	KLEAK_CNT_SC_HIT,           /* from the cache, no walk */
	KLEAK_CNT_SC_MISS,          /* walked, then cached */
	KLEAK_CNT_SC_UNCACHED,      /* walked, stack not cacheable */
	KLEAK_CNT_SC_NOT_TASK,      /* walked: not on the task's stack (interrupt) */
	KLEAK_CNT_SC_NESTED,        /* walked: nested in a cache use on this CPU */
	KLEAK_CNT_SC_PAUSED,        /* walked: the cache paused on this CPU (too few hits) */
	KLEAK_CNT_SC_MISMATCH,      /* verify mode: a hit whose walk differs */
	KLEAK_CNT_FREE_RESCUED,     /* frees the kernel skipped for the free program, done by its backup */
	/* The page family's allocations that are not leak candidates, not
	 * recorded (see kleak.bpf.c): count and bytes. */
	KLEAK_CNT_EXCL_MOVABLE,     /* __GFP_MOVABLE: user and page-cache pages */
	KLEAK_CNT_EXCL_MOVABLE_BYTES,
	KLEAK_CNT_EXCL_SLAB,        /* pages backing a slab: their objects are tracked */
	KLEAK_CNT_EXCL_SLAB_BYTES,
	KLEAK_CNT_EXCL_KMALLOC,     /* a kmalloc too large for a slab cache */
	KLEAK_CNT_EXCL_KMALLOC_BYTES,
	KLEAK_CNT_EXCL_PAGECACHE,   /* recorded, then added to the page cache: dropped */
	KLEAK_CNT_EXCL_PAGECACHE_BYTES,
	/* Frees with no per-object tracepoint, followed by the bulk-free
	 * follower (kleak.bpf.c): objects of kmem_cache_free_bulk() and
	 * kfree_bulk() arrays, and kfree_rcu() objects taken by a SLUB sheaf.
	 * They also count in FREE_SEEN/FREE_MATCHED. */
	KLEAK_CNT_FREE_BULK,            /* ... that removed a live record */
	KLEAK_CNT_FREE_BULK_UNFOLLOWED, /* array entries past KLEAK_BULK_FREE_MAX: not followed */
	KLEAK_CNT_MAX,
};

/* rodata stack_cache_mode: the verified stack cache, see
 * bpf/stack_cache.bpf.h. */
/* Ways per set of the stack cache's map: the loader sizes the map in
 * whole sets. */
#define KLEAK_SC_WAYS 4

enum kleak_stack_cache_mode {
	KLEAK_SC_OFF = 0,
	KLEAK_SC_ON = 1,
	KLEAK_SC_VERIFY = 2, /* also walk on every hit and count mismatches */
};

/* struct kleak_alloc.flags */
#define KLEAK_ALLOC_RECLAIMABLE 0x1 /* from a reclaimable cache (SReclaimable) */
/* The sampled mode: this allocation's stack was not captured; stack_id is a
 * hint, the stack last captured at the same call site on that CPU. */
#define KLEAK_ALLOC_STACK_HINT 0x2

/* Slots of the sampled mode's per-CPU call-site cache (a power of two). */
#define KLEAK_SITE_CACHE_SLOTS 1024

/* --cache NAME for kmem_cache_alloc: names compared up to this length. */
#define KLEAK_CACHE_NAME_LEN 32

/* --peek: reading the contents of outstanding allocations, on demand.
 * User space fills up to KLEAK_PEEK_SLOTS slots with addresses and lengths
 * and runs kleak_peek once (BPF_PROG_TEST_RUN); it reads only addresses
 * that are live records of kleak_live, at most their bytes_alloc. */
#define KLEAK_PEEK_MAX_BYTES 4096
#define KLEAK_PEEK_SLOTS 64

enum kleak_peek_status {
	KLEAK_PEEK_EMPTY = 0,  /* slot unused */
	KLEAK_PEEK_ASKED = 1,  /* filled by user space, not run yet */
	KLEAK_PEEK_OK = 2,     /* data[0..len) read while the record was live */
	KLEAK_PEEK_GONE = 3,   /* not a live tracked allocation: nothing read */
	KLEAK_PEEK_FAULT = 4,  /* the read faulted */
	KLEAK_PEEK_FREED = 5,  /* freed while being read: data unreliable */
};

struct kleak_peek_slot {
	__u64 addr;
	__u32 len;    /* asked; on return, what was read */
	__u32 status; /* enum kleak_peek_status */
	__u8 data[KLEAK_PEEK_MAX_BYTES];
};

/* Parts of kleak's BPF objects that a kernel may refuse (the verifier or an
 * attach) without taking the main job down: the loader drops such a part,
 * says so, and lists it in every report as degraded (user/probe/bpf_load.h).
 * KLEAK_PART_CORE is the part that cannot be dropped: kmalloc/kfree in
 * kleak.bpf.c, the uprobes in kleak_user.bpf.c. Also the bits of rodata
 * refuse_parts (bpf/refuse.bpf.h), the tests' way to make a part refused. */
enum kleak_part {
	KLEAK_PART_CORE = 1 << 0,
	KLEAK_PART_STACK_CACHE = 1 << 1,   /* bpf/stack_cache.bpf.h */
	KLEAK_PART_DIRECT_PTR = 1 << 2,    /* direct loads of const void * arguments */
	KLEAK_PART_KMEM_CACHE = 1 << 3,    /* kmem_cache_alloc/free */
	KLEAK_PART_PAGE = 1 << 4,          /* --family page */
	KLEAK_PART_PERCPU = 1 << 5,        /* --family percpu */
	KLEAK_PART_VMALLOC = 1 << 6,       /* --family vmalloc */
	KLEAK_PART_EXIT_FOLLOWER = 1 << 7, /* kleak_exit: followed processes forgotten at exit */
	KLEAK_PART_PEEK = 1 << 8,          /* kleak_peek_run: --peek */
	KLEAK_PART_EXEC_FOLLOWER = 1 << 9, /* kleak user: exec times of traced processes */
	KLEAK_PART_FREE_BACKUP = 1 << 10,  /* the free programs' backups (kleak_*_b) */
	KLEAK_PART_BULK_FREE = 1 << 11,    /* kleak_free_bulk, kleak_rcu_sheaf: frees without a tracepoint */
	KLEAK_PART_MODULE_FOLLOWER = 1 << 12, /* kleak_mod_load, kleak_mod_free: modules that come and go */
};

/* Modules loaded or unloaded while kleak traces (the module follower,
 * kleak.bpf.c): one record per load, keyed by its load time, so a module
 * loaded again at another address is another record. A module unloaded
 * that was loaded before kleak started gets a record of its unload alone
 * (load_ns 0). User space names their frames from kallsyms while they are
 * loaded and keeps the names after they are gone. */
#define KLEAK_MODULE_NAME_LEN 56 /* MODULE_NAME_LEN on 64-bit */
#define KLEAK_MAX_MODULES 512
struct kleak_module {
	__u64 text_base;  /* the module's core text */
	__u64 init_base;  /* its init text (freed after init; 0 when none) */
	__u32 text_size;
	__u32 init_size;
	__u64 load_ns;    /* bpf_ktime_get_ns() at module_load, 0: loaded before kleak */
	__u64 free_ns;    /* ... at module_free, 0 while loaded */
	char name[KLEAK_MODULE_NAME_LEN];
};

/* The most entries of one kmem_cache_free_bulk() array the follower reads:
 * kvfree_rcu()'s batches, the largest user, hold a page of pointers (510 on
 * 4 KiB pages). The rest are counted, KLEAK_CNT_FREE_BULK_UNFOLLOWED. */
#define KLEAK_BULK_FREE_MAX 512

/* The free programs, each with a backup (kleak.bpf.c): slots of the
 * per-CPU kleak_freeing map. */
enum kleak_free_slot {
	KLEAK_FREE_KFREE = 0,
	KLEAK_FREE_KMEM_CACHE,
	KLEAK_FREE_PAGE,
	KLEAK_FREE_PERCPU,
	KLEAK_FREE_VMALLOC,
	KLEAK_FREE_SLOTS,
};

/* Most tasks followed at once with follow_tasks (a command's process tree). */
#define KLEAK_MAX_TASKS 16384

/* A stack in kleak_stacks: nr frames, innermost first. */
struct kleak_stack {
	__u32 nr;
	__u32 pad;
	__u64 ips[KLEAK_MAX_STACK_DEPTH];
};

struct kleak_counters {
	__u64 v[KLEAK_CNT_MAX];
};

/* One outstanding allocation, keyed by its address in the live map. */
struct kleak_alloc {
	__u64 ts_ns;       /* bpf_ktime_get_ns() at allocation (CLOCK_MONOTONIC) */
	__u64 call_site;   /* caller of the allocator: a frame even without a stack */
	__u64 bytes_alloc; /* what the allocator handed out */
	__u64 stack_id;    /* kleak_stacks key (hash of the frames), 0 = no stack */
	__u32 bytes_req;   /* what the caller asked for */
	__s32 stack_err;   /* 0, or -errno: why there is no stack */
	__u32 pid;         /* thread that allocated */
	__u32 tgid;        /* its process */
	__u32 family;      /* enum kleak_family */
	__u32 flags;       /* KLEAK_ALLOC_* */
	char comm[KLEAK_TASK_COMM_LEN];
	__u64 cache;       /* struct kmem_cache *, 0 for kmalloc */
};

/* Evidence that frees bypass kleak's hooks: an allocation came back at an
 * address whose record was still live, so that object was freed unseen
 * (kmem_cache_free_bulk() and kfree_bulk(), used by the maple tree and
 * kvfree_rcu batches, have no per-object tracepoint). Keyed by the stale
 * record's cache pointer (kmem_cache family) or call site (kmalloc). */
#define KLEAK_MAX_MISSED_SITES 4096

#endif /* KLEAK_ABI_H */
