#define _GNU_SOURCE
#include "nodeprof_process_context.h"

#include <sys/uio.h>

ssize_t nodeprof_read_process_memory(pid_t pid, uint64_t address, void *buffer, size_t length)
{
	struct iovec local = {.iov_base = buffer, .iov_len = length};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)address, .iov_len = length};
	return process_vm_readv(pid, &local, 1, &remote, 1, 0);
}
