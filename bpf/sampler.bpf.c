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

/* Never read: keeps the span record header in the object's BTF (a type only used through a
 * pointer cast is left out), where the layout test compares it with the writer's struct. */
const volatile struct nodeprof_thread_record_header nodeprof_thread_record_layout = {.valid = 1};

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

/* tgid -> how to reach otel_thread_ctx_v1 in that process (OTEP 4947). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct nodeprof_thread_ctx_info);
} thread_ctx_procs SEC(".maps");

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &index);
	if (value)
		*value += 1; /* per-CPU slot: no atomics needed */
}

/* The current task's fields. Where the kernel has bpf_get_current_task_btf (5.11 and later; a
 * CO-RE check resolved at load time) the task pointer is BTF-typed and a field is a plain load;
 * older kernels read it with bpf_probe_read_kernel, a helper call each. */
#define NODEPROF_TASK_HAS_BTF                                                                      \
	bpf_core_enum_value_exists(enum bpf_func_id, BPF_FUNC_get_current_task_btf)

static __always_inline __u32 nodeprof_current_task_flags(void)
{
	if (NODEPROF_TASK_HAS_BTF) {
		struct task_struct___nodeprof *task = (void *)bpf_get_current_task_btf();
		return task->flags;
	}
	struct task_struct___nodeprof *task = (void *)bpf_get_current_task();
	return BPF_CORE_READ(task, flags);
}

/* The thread pointer of the current task as the kernel saved it. */
static __always_inline __u64 nodeprof_current_thread_pointer(void)
{
#if defined(__TARGET_ARCH_x86)
	if (NODEPROF_TASK_HAS_BTF) {
		struct task_struct___nodeprof *task = (void *)bpf_get_current_task_btf();
		return task->thread.fsbase;
	}
	struct task_struct___nodeprof *task = (void *)bpf_get_current_task();
	return BPF_CORE_READ(task, thread.fsbase);
#elif defined(__TARGET_ARCH_arm64)
	if (NODEPROF_TASK_HAS_BTF) {
		struct task_struct___nodeprof *task = (void *)bpf_get_current_task_btf();
		return task->thread.uw.tp_value;
	}
	struct task_struct___nodeprof *task = (void *)bpf_get_current_task();
	return BPF_CORE_READ(task, thread.uw.tp_value);
#else
	return 0;
#endif
}

/* Copies the thread's current span record (header, then its attributes, capped) to `dst`
 * and returns its length; 0 when the process publishes none, the thread has none, or it is
 * not valid. The reads are of the interrupted thread's own memory, while it is stopped. */
static __always_inline __u32 nodeprof_read_thread_ctx(__u32 tgid, __u8 *dst)
{
	struct nodeprof_thread_ctx_info *info = bpf_map_lookup_elem(&thread_ctx_procs, &tgid);
	if (!info)
		return 0;
	__u64 tp = nodeprof_current_thread_pointer();
	if (tp == 0)
		return 0;
	__u64 variable = 0;
	if (info->kind == NODEPROF_TLS_THREAD_POINTER_OFFSET) {
		variable = tp + (__u64)info->tp_offset;
	} else if (info->kind == NODEPROF_TLS_DTV) {
		__u64 dtv = 0, block = 0;
		if (bpf_probe_read_user(&dtv, sizeof(dtv), (void *)(tp + 8)) != 0 ||
		    bpf_probe_read_user(&block, sizeof(block),
					(void *)(dtv + 16 * info->dtv_module)) != 0) {
			count(NODEPROF_COUNTER_THREAD_CTX_UNREADABLE);
			return 0;
		}
		if (block == 0 || block == (__u64)-1) /* not allocated for this thread yet */
			return 0;
		variable = block + info->dtv_offset;
	} else {
		return 0;
	}
	__u64 record = 0;
	if (bpf_probe_read_user(&record, sizeof(record), (void *)variable) != 0) {
		count(NODEPROF_COUNTER_THREAD_CTX_UNREADABLE);
		return 0;
	}
	if (record == 0)
		return 0;
	/* One read takes the header and the first attribute bytes, which is all of a typical
	 * record (each helper call costs about 80 ns). A record that ends within that many bytes
	 * of an unmapped page fails it: then the header alone, and the attributes after it. */
	__u32 first = NODEPROF_THREAD_CTX_FIRST_READ;
	if (bpf_probe_read_user(dst, NODEPROF_THREAD_CTX_FIRST_READ, (void *)record) != 0) {
		first = NODEPROF_THREAD_CTX_HEADER;
		if (bpf_probe_read_user(dst, NODEPROF_THREAD_CTX_HEADER, (void *)record) != 0) {
			count(NODEPROF_COUNTER_THREAD_CTX_UNREADABLE);
			return 0;
		}
	}
	struct nodeprof_thread_record_header *header = (struct nodeprof_thread_record_header *)dst;
	if (header->valid != 1) { /* exactly 1 */
		count(NODEPROF_COUNTER_THREAD_CTX_INVALID);
		return 0;
	}
	__u32 attrs = header->attrs_data_size & 0x3ff;
	if (attrs > NODEPROF_THREAD_CTX_MAX_ATTRS)
		attrs = NODEPROF_THREAD_CTX_MAX_ATTRS;
	int failed = 0;
	if (first == NODEPROF_THREAD_CTX_FIRST_READ) {
		/* The bytes past the first read, if any (at most 612 - 100). */
		__u32 rest = 0;
		if (attrs > NODEPROF_THREAD_CTX_FIRST_READ - NODEPROF_THREAD_CTX_HEADER)
			rest = attrs -
			       (NODEPROF_THREAD_CTX_FIRST_READ - NODEPROF_THREAD_CTX_HEADER);
		rest &= 0x3ff;
		if (rest > NODEPROF_THREAD_CTX_MAX - NODEPROF_THREAD_CTX_FIRST_READ)
			rest = NODEPROF_THREAD_CTX_MAX - NODEPROF_THREAD_CTX_FIRST_READ;
		if (rest > 0)
			failed = bpf_probe_read_user(
				dst + NODEPROF_THREAD_CTX_FIRST_READ, rest,
				(void *)(record + NODEPROF_THREAD_CTX_FIRST_READ));
	} else if (attrs > 0) {
		failed = bpf_probe_read_user(dst + NODEPROF_THREAD_CTX_HEADER, attrs,
					     (void *)(record + NODEPROF_THREAD_CTX_HEADER));
	}
	if (failed != 0) {
		attrs = 0; /* keep the ids; the attributes were unreadable */
		count(NODEPROF_COUNTER_THREAD_CTX_UNREADABLE);
	}
	header->attrs_data_size = (__u16)attrs; /* the length actually copied, for user space */
	count(NODEPROF_COUNTER_THREAD_CTX_FOUND);
	return NODEPROF_THREAD_CTX_HEADER + attrs;
}

/* Process events (exec, exit, context published) go through the samples' ring buffer, after
 * the samples the process had before them. Selected processes only, with --pid. */
static __always_inline void nodeprof_emit_process_event(__u32 kind, __u32 tgid)
{
	if (nodeprof_config.filter_pids && !bpf_map_lookup_elem(&selected_pids, &tgid))
		return;
	struct nodeprof_process_event event = {
		.version = NODEPROF_PROCESS_EVENT_VERSION,
		.kind = kind,
		.timestamp_ns = bpf_ktime_get_ns(),
		.pid = tgid,
	};
	if (bpf_ringbuf_output(&samples, &event, sizeof(event), BPF_RB_NO_WAKEUP) != 0) {
		count(NODEPROF_COUNTER_PROCESS_EVENTS_LOST);
		return;
	}
	count(NODEPROF_COUNTER_PROCESS_EVENTS);
}

/* A raw tracepoint attaches by name: no tracefs needed. After exec, the process has new maps,
 * a new executable and no process context yet. */
SEC("raw_tp/sched_process_exec")
int nodeprof_process_exec(void *ctx)
{
	nodeprof_emit_process_event(NODEPROF_PROCESS_EXEC,
				    (__u32)(bpf_get_current_pid_tgid() >> 32));
	return 0;
}

/* Runs for every exiting thread; the process is gone when its last thread exits (do_exit
 * decrements signal->live before this tracepoint). Kernel threads are no processes of ours. */
SEC("raw_tp/sched_process_exit")
int nodeprof_process_exit(void *ctx)
{
	struct task_struct___nodeprof *task = (void *)bpf_get_current_task();
	if (BPF_CORE_READ(task, flags) & NODEPROF_PF_KTHREAD)
		return 0;
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	nodeprof_emit_process_event(NODEPROF_PROCESS_EXIT,
				    (__u32)(bpf_get_current_pid_tgid() >> 32));
	return 0;
}

/* The syscall tracepoint's record (include/trace/events/syscalls.h): the syscall number, then
 * its six arguments. */
struct nodeprof_sys_enter_args {
	__u64 common; /* common_type, flags, preempt count, pid */
	__s32 syscall_nr;
	__u32 pad;
	__u64 args[6];
};

#define NODEPROF_PR_SET_VMA 0x53564d41
#define NODEPROF_PR_SET_VMA_ANON_NAME 0

/* prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, addr, len, "OTEL_CTX"): what an OTEP 4719 writer
 * calls after it publishes or updates its context (named or not, the call is made). A syscall
 * tracepoint fires for this one syscall only, unlike the raw sys_enter tracepoint. */
SEC("tracepoint/syscalls/sys_enter_prctl")
int nodeprof_process_context(struct nodeprof_sys_enter_args *ctx)
{
	if (ctx->args[0] != NODEPROF_PR_SET_VMA || ctx->args[1] != NODEPROF_PR_SET_VMA_ANON_NAME)
		return 0;
	char name[9] = {};
	if (bpf_probe_read_user_str(name, sizeof(name), (void *)ctx->args[4]) != 9)
		return 0;
	if (name[0] != 'O' || name[1] != 'T' || name[2] != 'E' || name[3] != 'L' ||
	    name[4] != '_' || name[5] != 'C' || name[6] != 'T' || name[7] != 'X')
		return 0;
	nodeprof_emit_process_event(NODEPROF_PROCESS_CONTEXT,
				    (__u32)(bpf_get_current_pid_tgid() >> 32));
	return 0;
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
	sample->thread_ctx_len = 0;
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
	if (nodeprof_current_task_flags() & NODEPROF_PF_KTHREAD) {
		sample->flags |= NODEPROF_FLAG_KERNEL_THREAD;
	} else {
		__u64 *user_frames = &sample->frames[kernel_len & NODEPROF_MAX_STACK_DEPTH];
		if (nodeprof_unwind_user(ctx, sample, user_frames) < 0)
			count(NODEPROF_COUNTER_USTACK_FAILED);
	}

	__u32 frame_count = (kernel_len & NODEPROF_MAX_STACK_DEPTH) +
			    (sample->user_stack_len & NODEPROF_MAX_STACK_DEPTH);
	__u64 size = NODEPROF_SAMPLE_SIZE(frame_count);
	if (size > __builtin_offsetof(struct nodeprof_sample, thread_ctx_room)) {
		count(NODEPROF_COUNTER_INTERNAL_ERROR); /* cannot happen: both are at most 127 */
		return 0;
	}
	/* The span record follows the used frames. */
	if (!(sample->flags & NODEPROF_FLAG_KERNEL_THREAD)) {
		__u32 ctx_len = nodeprof_read_thread_ctx(tgid, (__u8 *)sample + size);
		sample->thread_ctx_len = (__u16)ctx_len;
		size += ctx_len & 0x3ff;
	}
	if (size > sizeof(*sample)) { /* cannot happen: the room holds the largest record */
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
