/* Counts heap allocations of a process for hack/bench (LD_PRELOAD=alloc-count.so): malloc,
 * calloc, realloc and the aligned allocations go to glibc's own functions (__libc_*), and the total
 * is written to the file named by ALLOC_COUNT_FILE when the process exits. */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_ullong allocations;

void *malloc(size_t size)
{
	atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
	return __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
	atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
	return __libc_calloc(count, size);
}

void *realloc(void *pointer, size_t size)
{
	atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
	return __libc_realloc(pointer, size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
	atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
	void *pointer = __libc_memalign(alignment, size);
	if (!pointer)
		return 12; /* ENOMEM */
	*out = pointer;
	return 0;
}

void *aligned_alloc(size_t alignment, size_t size)
{
	atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
	return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size)
{
	atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
	return __libc_memalign(alignment, size);
}

/* The count so far, for a process that looks it up (dlsym) to count one stage. */
unsigned long long nodeprof_alloc_count(void)
{
	return atomic_load(&allocations);
}

__attribute__((destructor)) static void write_count(void)
{
	const char *path = getenv("ALLOC_COUNT_FILE");
	if (!path)
		return;
	FILE *file = fopen(path, "w");
	if (!file)
		return;
	fprintf(file, "%llu\n", (unsigned long long)atomic_load(&allocations));
	fclose(file);
}
