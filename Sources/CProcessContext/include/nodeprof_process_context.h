// C shims for the ProcessContext module: reading another process's memory.
//
// Every exported symbol carries the `nodeprof_` prefix.
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
ssize_t nodeprof_read_process_memory(pid_t pid, uint64_t address, void *buffer, size_t length);

#ifdef __cplusplus
}
#endif
