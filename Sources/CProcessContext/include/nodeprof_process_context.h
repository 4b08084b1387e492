// C shims for the ProcessContext module: reading another process's memory.
//
// Every exported symbol carries this target's prefix, `nodeprof_process_context_`.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Copies `length` bytes at `address` in process `pid` into `buffer` with one
/// process_vm_readv(2). Returns the bytes copied (possibly fewer, at an unmapped page), or -1
/// with errno set (ESRCH: the process is gone; EFAULT: nothing mapped at `address`; EPERM:
/// no ptrace access).
ssize_t nodeprof_process_context_read_memory(pid_t pid, uint64_t address, void *buffer,
					     size_t length);

/// The thread pointer (x86_64: FS base; arm64: TPIDR_EL0) of thread `tid`, read with ptrace:
/// the thread is seized, stopped with PTRACE_INTERRUPT (for microseconds), its registers read,
/// and detached. A blocking system call it was in is restarted. Returns 0, or -errno (EPERM: no
/// ptrace access or another tracer is attached; ESRCH: the thread is gone; ENOSYS: an
/// architecture without support).
int nodeprof_process_context_thread_pointer(pid_t tid, uint64_t *thread_pointer);

#ifdef __cplusplus
}
#endif
