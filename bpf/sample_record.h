/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * The single source of truth for data shared between the BPF sampler and user space.
 * Included by bpf/sampler.bpf.c and by the CSampling C target (and so seen by Swift).
 * A layout test (SamplingTests) compares these structs with the BTF of the compiled object.
 */
#ifndef NODEPROF_SAMPLE_RECORD_H
#define NODEPROF_SAMPLE_RECORD_H

#include <linux/types.h>

/* Frames kept per stack. The kernel caps this further at kernel.perf_event_max_stack. */
#define NODEPROF_MAX_STACK_DEPTH 127

/* Bump when struct nodeprof_sample changes shape; user space refuses other versions. */
#define NODEPROF_RECORD_VERSION 2

/* OTEP 4947 thread context record: a 28-byte header, then at most 612 bytes of attributes
 * (the record stays within 640 bytes). */
#define NODEPROF_THREAD_CTX_HEADER 28
#define NODEPROF_THREAD_CTX_MAX_ATTRS 612
#define NODEPROF_THREAD_CTX_MAX (NODEPROF_THREAD_CTX_HEADER + NODEPROF_THREAD_CTX_MAX_ATTRS)
/* Bytes of a record the BPF program reads at once: the header and 100 bytes of attributes. */
#define NODEPROF_THREAD_CTX_FIRST_READ 128

/* The record's 28-byte header as the BPF program reads it (host endianness). The writer's
 * otel_thread_record (Sources/CContextPublisher) and the Swift decoder (TraceContext) must
 * agree: a layout test compares all three, this one through the object's BTF. */
struct nodeprof_thread_record_header {
	__u8 trace_id[16];
	__u8 span_id[8];
	__u8 valid; /* exactly 1: valid */
	__u8 trace_flags;
	__u16 attrs_data_size; /* bytes of attribute entries that follow */
};
_Static_assert(sizeof(struct nodeprof_thread_record_header) == NODEPROF_THREAD_CTX_HEADER,
	       "thread record header is 28 bytes");

/* nodeprof_sample.flags */
#define NODEPROF_FLAG_KSTACK_FAILED 0x1u    /* bpf_get_stack for the kernel stack returned < 0 */
#define NODEPROF_FLAG_USTACK_FAILED 0x2u    /* user stack walk failed */
#define NODEPROF_FLAG_USTACK_TRUNCATED 0x4u /* user stack filled the buffer */
#define NODEPROF_FLAG_KSTACK_TRUNCATED 0x8u /* kernel stack filled the buffer */
#define NODEPROF_FLAG_KERNEL_THREAD 0x10u   /* task is a kernel thread: no user stack */

/* One sample. The BPF program builds it in a per-CPU scratch slot and writes only the used
 * part into the ring buffer: the header up to `frames`, then kernel_stack_len kernel
 * frames followed by user_stack_len user frames, each stack leaf first, then
 * thread_ctx_len bytes of the thread's span record (OTEP 4947) when it had a valid one. */
struct nodeprof_sample {
	__u32 version;	    /* NODEPROF_RECORD_VERSION */
	__u32 flags;	    /* NODEPROF_FLAG_* */
	__u64 timestamp_ns; /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cgroup_id;    /* cgroup v2 id of the task */
	__u32 pid;	    /* tgid */
	__u32 tid;	    /* kernel pid of the thread */
	__u32 cpu;
	__u32 kernel_stack_len; /* frames valid in kernel_stack */
	__u32 user_stack_len;	/* frames valid in user_stack */
	__u16 thread_ctx_len;	/* bytes of span record after the frames; 0: none */
	__u16 reserved;
	char comm[16];
	__u64 frames[2 * NODEPROF_MAX_STACK_DEPTH];
	/* Room for the span record when every frame slot is used (it follows the used frames). */
	__u8 thread_ctx_room[NODEPROF_THREAD_CTX_MAX];
};

/* A process event, in the same ring buffer as the samples (so it arrives after every sample
 * the process had before it): the first word tells the two records apart. */
#define NODEPROF_PROCESS_EVENT_VERSION 0x70650001u
#define NODEPROF_PROCESS_EXEC 1 /* the process replaced its program (execve) */
#define NODEPROF_PROCESS_EXIT 2 /* its last thread exited: the process is gone */
/* It called prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, ..., "OTEL_CTX"): a writer does this
 * after publishing or updating its process context (OTEP 4719), whether naming works or not. */
#define NODEPROF_PROCESS_CONTEXT 3
struct nodeprof_process_event {
	__u32 version; /* NODEPROF_PROCESS_EVENT_VERSION */
	__u32 kind;    /* NODEPROF_PROCESS_* */
	__u64 timestamp_ns;
	__u32 pid; /* tgid */
	__u32 reserved;
};

/* Bytes of a record holding `frame_count` frames (without a span record). */
#define NODEPROF_SAMPLE_SIZE(frame_count)                                                          \
	(__builtin_offsetof(struct nodeprof_sample, frames) + (frame_count) * sizeof(__u64))

/* How the BPF program reaches a process's otel_thread_ctx_v1 (map "thread_ctx_procs", by
 * tgid; written by user space once it has located the variable). */
#define NODEPROF_TLS_THREAD_POINTER_OFFSET 1 /* variable at thread pointer + tp_offset */
#define NODEPROF_TLS_DTV 2 /* at dtv[dtv_module].pointer + dtv_offset (glibc, 16-byte entries) */
struct nodeprof_thread_ctx_info {
	__u32 kind; /* NODEPROF_TLS_* */
	__u32 reserved;
	__s64 tp_offset;
	__u64 dtv_module;
	__u64 dtv_offset;
};

/* Indexes into the per-CPU "counters" array map. Every sample lands in exactly one of
 * SUBMITTED, IDLE_DROPPED, FILTERED_OUT, RINGBUF_FULL, INTERNAL_ERROR; the stack counters
 * count problems of submitted samples. */
enum nodeprof_counter {
	NODEPROF_COUNTER_SEEN = 0,     /* program invocations */
	NODEPROF_COUNTER_SUBMITTED,    /* records written to the ring buffer */
	NODEPROF_COUNTER_IDLE_DROPPED, /* idle task samples dropped (config.drop_idle) */
	NODEPROF_COUNTER_FILTERED_OUT, /* not one of the selected processes */
	NODEPROF_COUNTER_RINGBUF_FULL, /* lost: the ring buffer had no room */
	NODEPROF_COUNTER_KSTACK_FAILED,
	NODEPROF_COUNTER_USTACK_FAILED,
	NODEPROF_COUNTER_INTERNAL_ERROR,	/* a "cannot happen" branch did: lost, and a bug */
	NODEPROF_COUNTER_THREAD_CTX_FOUND,	/* submitted samples carrying a valid span record */
	NODEPROF_COUNTER_THREAD_CTX_UNREADABLE, /* a located variable or record could not be read */
	NODEPROF_COUNTER_THREAD_CTX_INVALID,  /* a record was attached but its valid byte was not 1
					       */
	NODEPROF_COUNTER_PROCESS_EVENTS,      /* process events written to the ring buffer */
	NODEPROF_COUNTER_PROCESS_EVENTS_LOST, /* process events lost: the ring buffer had no room */
	NODEPROF_COUNTER_MAX,
};

/* Read-only configuration, set in .rodata before the program is loaded. */
struct nodeprof_config {
	__u32 drop_idle;   /* non-zero: drop samples of the idle task (pid 0) */
	__u32 filter_pids; /* non-zero: only sample tgids present in the "selected_pids" map */
	/* Wake the reader only once this many bytes wait in the ring buffer. A wakeup is an
	 * irq_work self-IPI (a VM exit under virtualization) costing microseconds per sample;
	 * the reader polls on a short timer instead and is woken early only when the ring
	 * fills up. 0 wakes on every sample. */
	__u32 wakeup_bytes;
	__u32 reserved;
};

#endif
