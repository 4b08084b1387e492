/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The user-stack walk, behind one function so a DWARF unwinder can replace it.
 * This one follows frame pointers with the kernel's bpf_get_stack (BPF_F_USER_STACK),
 * which starts at the task's saved user registers, so it also works when the sample
 * interrupted a system call.
 */
#ifndef NODEPROF_UNWIND_FP_H
#define NODEPROF_UNWIND_FP_H

#include "sample_record.h"

/* Writes the user stack into `frames` (room for NODEPROF_MAX_STACK_DEPTH entries), sets
 * sample->user_stack_len and the USTACK_* flags. Returns 0 or < 0. */
static __always_inline int nodeprof_unwind_user(struct bpf_perf_event_data *ctx,
						struct nodeprof_sample *sample, __u64 *frames)
{
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
