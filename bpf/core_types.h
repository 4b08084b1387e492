/* SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0) */
/*
 * Minimal hand-declared kernel structs for CO-RE. Only the fields we read are declared;
 * preserve_access_index makes clang emit BTF relocations, and libbpf fixes the offsets
 * up against the running kernel's BTF at load time. Suffixes (___nodeprof) keep these
 * from clashing with real definitions should a header ever pull them in.
 */
#ifndef NODEPROF_CORE_TYPES_H
#define NODEPROF_CORE_TYPES_H

#define NODEPROF_PF_KTHREAD 0x00200000 /* include/linux/sched.h: I am a kernel thread */

#if defined(__TARGET_ARCH_x86)
/* x86_64: the FS base (the thread pointer) as saved in the task. */
struct thread_struct___nodeprof {
	unsigned long fsbase;
} __attribute__((preserve_access_index));
#elif defined(__TARGET_ARCH_arm64)
struct thread_uw___nodeprof {
	unsigned long tp_value;
} __attribute__((preserve_access_index));
struct thread_struct___nodeprof {
	struct thread_uw___nodeprof uw;
} __attribute__((preserve_access_index));
#endif

/* signal->live: threads of the process still running (0 once its last thread exits). */
struct atomic___nodeprof {
	int counter;
} __attribute__((preserve_access_index));
struct signal_struct___nodeprof {
	struct atomic___nodeprof live;
} __attribute__((preserve_access_index));

struct task_struct___nodeprof {
	unsigned int flags;
	struct thread_struct___nodeprof thread;
	struct signal_struct___nodeprof *signal;
} __attribute__((preserve_access_index));

#endif
