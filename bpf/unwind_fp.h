/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The user-stack walk, behind one function (nodeprof_unwind_user) so a DWARF unwinder can
 * replace it. This one follows frame pointers.
 *
 * - Sample interrupted user mode: walk here, from the interrupted registers. The stack
 *   near SP is copied in one bpf_probe_read_user into a per-CPU buffer and frames found
 *   inside that copy cost no further reads; frames beyond it are read one record at a
 *   time. One bulk copy costs far less than a read per frame (measured in BENCHMARKS.md).
 * - Sample interrupted kernel mode (a system call, a page fault): the user registers sit
 *   in the task's pt_regs; the kernel's walker (bpf_get_stack with BPF_F_USER_STACK)
 *   starts from them.
 * Both give the same result: the user IP first, then one return address per frame.
 */
#ifndef NODEPROF_UNWIND_FP_H
#define NODEPROF_UNWIND_FP_H

#include "sample_record.h"

/* Bytes of stack copied at SP (a power of two, at most one page). */
#define NODEPROF_STACK_COPY_BYTES 1024
#define NODEPROF_STACK_COPY_WORDS (NODEPROF_STACK_COPY_BYTES / 8)
#define NODEPROF_PAGE_SIZE 4096

struct nodeprof_stack_copy {
	__u64 words[NODEPROF_STACK_COPY_WORDS];
	__u64 length;	     /* bytes valid in words */
	__u64 stack_pointer; /* where words were copied from */
	__u64 next_fp;	     /* second result of nodeprof_frame_step */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nodeprof_stack_copy);
} stack_copy SEC(".maps");

/* The frame record a frame pointer points at on x86_64 and arm64. */
struct nodeprof_frame_record {
	__u64 next_fp; /* the caller's frame pointer */
	__u64 return_address;
};

#if defined(__TARGET_ARCH_x86)
#define NODEPROF_REGS_USER_MODE(r) (((r)->cs & 3) == 3)
#define NODEPROF_REGS_IP(r) ((r)->rip)
#define NODEPROF_REGS_SP(r) ((r)->rsp)
#define NODEPROF_REGS_FP(r) ((r)->rbp)
#elif defined(__TARGET_ARCH_arm64)
#define NODEPROF_REGS_USER_MODE(r) (((r)->pstate & 0xf) == 0) /* EL0t */
#define NODEPROF_REGS_IP(r) ((r)->pc)
#define NODEPROF_REGS_SP(r) ((r)->sp)
#define NODEPROF_REGS_FP(r) ((r)->regs[29])
#else
#error "unsupported architecture: define __TARGET_ARCH_x86 or __TARGET_ARCH_arm64"
#endif

/* True when the sample interrupted user mode (there is then no kernel stack). */
static __always_inline int nodeprof_interrupted_user_mode(struct bpf_perf_event_data *ctx)
{
	return NODEPROF_REGS_USER_MODE(&ctx->regs);
}

/* Copies the stack at `sp` into `copy`; returns the bytes copied (0 on failure). The copy
 * stops at the page end when the full length would run past the stack's last page. */
static __always_inline __u64 nodeprof_copy_stack(struct nodeprof_stack_copy *copy, __u64 sp)
{
	if (bpf_probe_read_user(copy->words, NODEPROF_STACK_COPY_BYTES, (void *)sp) == 0)
		return NODEPROF_STACK_COPY_BYTES;
	__u64 to_page_end = NODEPROF_PAGE_SIZE - (sp & (NODEPROF_PAGE_SIZE - 1));
	if (to_page_end >= NODEPROF_STACK_COPY_BYTES)
		return 0;
	to_page_end &= NODEPROF_STACK_COPY_BYTES - 1; /* bound for the verifier */
	if (to_page_end >= 16 && bpf_probe_read_user(copy->words, to_page_end, (void *)sp) == 0)
		return to_page_end;
	return 0;
}

/* One step of the walk: the frame record at `fp`, from the stack copy when it lies inside,
 * else read from user memory. Returns the return address (0: stop) and leaves the caller's
 * frame pointer in copy->next_fp.
 *
 * Global on purpose (not static inline): the verifier checks a global function once, on its
 * own, and the walk loop then costs it one call per iteration. Inlined, the loop body made it
 * explore thousands of states (135k instructions, 145 ms of every agent start). */
__attribute__((noinline)) __u64 nodeprof_frame_step(__u64 fp)
{
	__u32 zero = 0;
	struct nodeprof_stack_copy *copy = bpf_map_lookup_elem(&stack_copy, &zero);
	if (!copy)
		return 0;
	struct nodeprof_frame_record record;
	__u64 offset = fp - copy->stack_pointer;
	if (fp >= copy->stack_pointer && offset + sizeof(record) <= copy->length) {
		__u64 word = (offset / 8) & (NODEPROF_STACK_COPY_WORDS - 1);
		if (word + 1 >= NODEPROF_STACK_COPY_WORDS)
			return 0; /* cannot happen given the check above; keeps the verifier sure */
		record.next_fp = copy->words[word];
		record.return_address = copy->words[word + 1];
	} else if (bpf_probe_read_user(&record, sizeof(record), (void *)fp) != 0) {
		return 0;
	}
	copy->next_fp = record.next_fp;
	return record.return_address;
}

/* Walks frame pointers from the interrupted user registers into `frames`. */
static __always_inline void nodeprof_walk_frame_pointers(struct bpf_perf_event_data *ctx,
							 struct nodeprof_sample *sample,
							 struct nodeprof_stack_copy *copy,
							 __u64 *frames)
{
	__u64 sp = NODEPROF_REGS_SP(&ctx->regs) & ~7ULL;
	__u64 fp = NODEPROF_REGS_FP(&ctx->regs);
	__u32 count = 1;
	frames[0] = NODEPROF_REGS_IP(&ctx->regs);

	copy->stack_pointer = sp;
	copy->length = nodeprof_copy_stack(copy, sp);

	for (int i = 1; i < NODEPROF_MAX_STACK_DEPTH; i++) {
		/* A frame record is 8-byte aligned and above SP: the stack grows down. */
		if (fp < sp || (fp & 7) != 0)
			break;
		__u64 return_address = nodeprof_frame_step(fp);
		if (return_address == 0)
			break;
		frames[i] = return_address;
		count = i + 1;
		/* Callers' records sit at higher addresses; anything else is a loop or garbage. */
		__u64 next_fp = copy->next_fp;
		if (next_fp <= fp)
			break;
		fp = next_fp;
	}
	sample->user_stack_len = count;
	if (count >= NODEPROF_MAX_STACK_DEPTH)
		sample->flags |= NODEPROF_FLAG_USTACK_TRUNCATED;
}

/* Writes the user stack into `frames` (room for NODEPROF_MAX_STACK_DEPTH entries), sets
 * sample->user_stack_len and the USTACK_* flags. Returns 0 or < 0. */
static __always_inline int nodeprof_unwind_user(struct bpf_perf_event_data *ctx,
						struct nodeprof_sample *sample, __u64 *frames)
{
	if (nodeprof_interrupted_user_mode(ctx)) {
		__u32 zero = 0;
		struct nodeprof_stack_copy *copy = bpf_map_lookup_elem(&stack_copy, &zero);
		if (copy) { /* always: a one-slot per-CPU array */
			nodeprof_walk_frame_pointers(ctx, sample, copy, frames);
			return 0;
		}
	}
	long bytes = bpf_get_stack(ctx, frames, NODEPROF_MAX_STACK_DEPTH * sizeof(__u64),
				   BPF_F_USER_STACK);
	if (bytes < 0) {
		sample->user_stack_len = 0;
		sample->flags |= NODEPROF_FLAG_USTACK_FAILED;
		return (int)bytes;
	}
	sample->user_stack_len = (__u32)(bytes / sizeof(__u64));
	if (sample->user_stack_len >= NODEPROF_MAX_STACK_DEPTH)
		sample->flags |= NODEPROF_FLAG_USTACK_TRUNCATED;
	return 0;
}

#endif
