/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * On-CPU sampler. Attached to a PERF_COUNT_SW_CPU_CLOCK perf event on every online CPU;
 * each firing writes one struct nodeprof_sample (ids, cgroup, time, kernel and user
 * stacks) into a ring buffer. Every invocation ends in exactly one outcome counter, so
 * nothing is lost silently.
 */
#include <linux/bpf.h>
#include <linux/bpf_perf_event.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "core_types.h"
#include "sample_record.h"
#include "unwind_fp.h"

/* Stack lengths are bounded for the verifier with `& NODEPROF_MAX_STACK_DEPTH`. */
_Static_assert(((NODEPROF_MAX_STACK_DEPTH + 1) & NODEPROF_MAX_STACK_DEPTH) == 0,
	       "NODEPROF_MAX_STACK_DEPTH must be a power of two minus one");

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (libbpf exposes .rodata as the initial value). */
const volatile struct nodeprof_config nodeprof_config = {
	.drop_idle = 1,
	.filter_pids = 0,
	.wakeup_bytes = 0,
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* resized by user space before load */
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NODEPROF_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

/* Where a sample is assembled before only its used bytes are copied into the ring buffer:
 * bpf_get_stack zero-fills the rest of its buffer, which is cheap in this cache-hot slot
 * and would cost two cold kilobytes per sample inside the ring buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nodeprof_sample);
} scratch SEC(".maps");

/* tgid -> 1 for the processes selected with --pid (consulted when filter_pids is set). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} selected_pids SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);
	if (value)
		*value += 1; /* per-CPU slot: no atomics needed */
}

SEC("perf_event")
int nodeprof_sample_cpu(struct bpf_perf_event_data *ctx)
{
	count(NODEPROF_COUNTER_SEEN);

	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)pid_tgid;
	__u32 tgid = (__u32)(pid_tgid >> 32);

	if (tid == 0 && nodeprof_config.drop_idle) {
		count(NODEPROF_COUNTER_IDLE_DROPPED);
		return 0;
	}
	if (nodeprof_config.filter_pids && !bpf_map_lookup_elem(&selected_pids, &tgid)) {
		count(NODEPROF_COUNTER_FILTERED_OUT);
		return 0;
	}

	__u32 zero = 0;
	struct nodeprof_sample *sample = bpf_map_lookup_elem(&scratch, &zero);
	if (!sample) { /* cannot happen: a one-slot per-CPU array */
		count(NODEPROF_COUNTER_INTERNAL_ERROR);
		return 0;
	}

	sample->version = NODEPROF_RECORD_VERSION;
	sample->flags = 0;
	sample->timestamp_ns = bpf_ktime_get_ns();
	sample->cgroup_id = bpf_get_current_cgroup_id();
	sample->pid = tgid;
	sample->tid = tid;
	sample->cpu = bpf_get_smp_processor_id();
	sample->reserved = 0;
	bpf_get_current_comm(sample->comm, sizeof(sample->comm));

	/* A sample that interrupted user mode has no kernel stack: skip the kernel's walker. */
	long kbytes = nodeprof_interrupted_user_mode(ctx)
			      ? 0
			      : bpf_get_stack(ctx, sample->frames,
					      NODEPROF_MAX_STACK_DEPTH * sizeof(__u64), 0);
	__u32 kernel_len = 0;
	if (kbytes < 0) {
		sample->flags |= NODEPROF_FLAG_KSTACK_FAILED;
		count(NODEPROF_COUNTER_KSTACK_FAILED);
	} else {
		kernel_len = (__u32)(kbytes / sizeof(__u64));
		if (kernel_len >= NODEPROF_MAX_STACK_DEPTH) {
			kernel_len = NODEPROF_MAX_STACK_DEPTH;
			sample->flags |= NODEPROF_FLAG_KSTACK_TRUNCATED;
		}
	}
	sample->kernel_stack_len = kernel_len;

	/* User frames go right after the kernel frames, so only used bytes are sent. */
	sample->user_stack_len = 0;
	struct task_struct___nodeprof *task = (void *)bpf_get_current_task();
	if (BPF_CORE_READ(task, flags) & NODEPROF_PF_KTHREAD) {
		sample->flags |= NODEPROF_FLAG_KERNEL_THREAD;
	} else {
		__u64 *user_frames = &sample->frames[kernel_len & NODEPROF_MAX_STACK_DEPTH];
		if (nodeprof_unwind_user(ctx, sample, user_frames) < 0)
			count(NODEPROF_COUNTER_USTACK_FAILED);
	}

	__u32 frame_count = (kernel_len & NODEPROF_MAX_STACK_DEPTH) +
			    (sample->user_stack_len & NODEPROF_MAX_STACK_DEPTH);
	__u64 size = NODEPROF_SAMPLE_SIZE(frame_count);
	if (size > sizeof(*sample)) { /* cannot happen: both lengths are at most 127 */
		count(NODEPROF_COUNTER_INTERNAL_ERROR);
		return 0;
	}
	__u64 pending = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA);
	__u64 wakeup =
		pending >= nodeprof_config.wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&samples, sample, size, wakeup) != 0) {
		count(NODEPROF_COUNTER_RINGBUF_FULL);
		return 0;
	}
	count(NODEPROF_COUNTER_SUBMITTED);
	return 0;
}
