#define _GNU_SOURCE
#include "nodeprof_process_context.h"

#include <elf.h>
#include <errno.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>

ssize_t nodeprof_process_context_read_memory(pid_t pid, uint64_t address, void *buffer,
					     size_t length)
{
	struct iovec local = {.iov_base = buffer, .iov_len = length};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)address, .iov_len = length};
	return process_vm_readv(pid, &local, 1, &remote, 1, 0);
}

/* Reads the thread pointer of a thread stopped under ptrace. */
static int nodeprof_read_thread_pointer(pid_t tid, uint64_t *thread_pointer)
{
#if defined(__x86_64__)
	struct user_regs_struct regs;
	if (ptrace(PTRACE_GETREGS, tid, NULL, &regs) != 0)
		return -errno;
	*thread_pointer = regs.fs_base;
	return 0;
#elif defined(__aarch64__)
	uint64_t tls = 0;
	struct iovec vector = {.iov_base = &tls, .iov_len = sizeof(tls)};
	if (ptrace(PTRACE_GETREGSET, tid, (void *)(uintptr_t)NT_ARM_TLS, &vector) != 0)
		return -errno;
	*thread_pointer = tls;
	return 0;
#else
	(void)tid;
	(void)thread_pointer;
	return -ENOSYS;
#endif
}

int nodeprof_process_context_thread_pointer(pid_t tid, uint64_t *thread_pointer)
{
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0)
		return -errno;
	int result = 0;
	int deliver = 0;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) != 0) {
		result = -errno;
	} else {
		/* Wait for the interrupt stop; another stop (a signal arriving meanwhile) also
		 * leaves the thread stopped, which is all the register read needs. */
		int status = 0;
		pid_t waited;
		do {
			waited = waitpid(tid, &status, __WALL);
		} while (waited < 0 && errno == EINTR);
		if (waited < 0) {
			result = -errno;
		} else if (WIFEXITED(status) || WIFSIGNALED(status)) {
			return -ESRCH; /* gone: nothing to detach */
		} else {
			result = nodeprof_read_thread_pointer(tid, thread_pointer);
			/* A signal-delivery stop hands its signal back on detach (else it would be
			 * lost); the interrupt stop has none. */
			if (WIFSTOPPED(status) && (status >> 16) != PTRACE_EVENT_STOP)
				deliver = WSTOPSIG(status);
		}
	}
	ptrace(PTRACE_DETACH, tid, NULL, (void *)(uintptr_t)deliver);
	return result;
}
