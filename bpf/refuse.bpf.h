/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Refusal on demand, to test the loader's tiered load (user/probe/bpf_load.h)
 * against a real verifier refusal rather than a mock of one.
 *
 * The loader sets refuse_parts from KLEAK_REFUSE (a list of part names,
 * for tests only; 0 in every normal run). Each optional part starts with
 * KLEAK_REFUSE_IF(its enum kleak_part bit): with the bit set, the part
 * holds a read above the frame pointer, which every verifier refuses
 * ("invalid read from stack R10 off=8 size=8"). refuse_parts is a frozen
 * .rodata constant, so with the bit clear the verifier prunes the branch
 * and the loaded program is the same as without it. */
#ifndef KLEAK_REFUSE_BPF_H
#define KLEAK_REFUSE_BPF_H

const volatile __u32 refuse_parts = 0;

#define KLEAK_REFUSE_IF(part)                                                   \
	do {                                                                    \
		if (refuse_parts & (part))                                      \
			asm volatile("r0 = *(u64 *)(r10 + 8)" ::: "r0");       \
	} while (0)

#endif /* KLEAK_REFUSE_BPF_H */
