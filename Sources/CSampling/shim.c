#define _GNU_SOURCE
#include "nodeprof_sampling.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NODEPROF_MAX_CPUS 1024

struct nodeprof_sampler {
	struct bpf_object *object;
	struct bpf_program *program;
	struct bpf_map *counters;
	struct bpf_map *selected;
	struct bpf_map *thread_ctx;
	struct ring_buffer *ring;
	nodeprof_sample_fn consumer;
	void *consumer_context;
	int delivered; /* records handed to the consumer in the current poll */
	uint64_t
		consume_deadline; /* CLOCK_MONOTONIC ns at which the current poll stops consuming */
	int perf_fds[NODEPROF_MAX_CPUS];
	struct bpf_link *links[NODEPROF_MAX_CPUS];
	struct bpf_link *exec_link;
	struct bpf_link *exit_link;
	struct bpf_link *context_link;
	int attached;
};

/* libbpf's messages go to a small ring of text so a failed load can report the verifier's
 * complaint; they are never printed unasked. Loading happens once, on one thread. */
static char nodeprof_libbpf_log[16384];
static size_t nodeprof_libbpf_log_len;

static int nodeprof_libbpf_print(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	char line[1024];
	int n = vsnprintf(line, sizeof(line), format, args);
	if (n <= 0)
		return 0;
	size_t len = strnlen(line, sizeof(line));
	if (len >= sizeof(nodeprof_libbpf_log)) {
		return 0;
	}
	if (nodeprof_libbpf_log_len + len >= sizeof(nodeprof_libbpf_log)) {
		/* keep the newest text: drop the oldest half */
		size_t keep = nodeprof_libbpf_log_len / 2;
		memmove(nodeprof_libbpf_log, nodeprof_libbpf_log + nodeprof_libbpf_log_len - keep,
			keep);
		nodeprof_libbpf_log_len = keep;
	}
	memcpy(nodeprof_libbpf_log + nodeprof_libbpf_log_len, line, len);
	nodeprof_libbpf_log_len += len;
	nodeprof_libbpf_log[nodeprof_libbpf_log_len] = '\0';
	return 0;
}

static void nodeprof_copy_log(char *log, size_t log_size)
{
	if (!log || log_size == 0)
		return;
	size_t len = nodeprof_libbpf_log_len;
	const char *start = nodeprof_libbpf_log;
	if (len >= log_size) {
		start += len - (log_size - 1);
		len = log_size - 1;
	}
	memcpy(log, start, len);
	log[len] = '\0';
}

/* Offset of global `name` inside the .rodata section, from the object's DATASEC BTF, so the
 * order in which the compiler laid out globals does not matter. */
static long nodeprof_rodata_offset(struct bpf_object *object, const char *name, size_t size)
{
	struct btf *btf = bpf_object__btf(object);
	if (!btf)
		return -ENOENT;
	__s32 id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (id < 0)
		return -ENOENT;
	const struct btf_type *sec = btf__type_by_id(btf, (__u32)id);
	const struct btf_var_secinfo *info = btf_var_secinfos(sec);
	for (__u16 i = 0; i < btf_vlen(sec); i++, info++) {
		const struct btf_type *var = btf__type_by_id(btf, info->type);
		const char *var_name = var ? btf__name_by_offset(btf, var->name_off) : NULL;
		if (var_name && strcmp(var_name, name) == 0)
			return info->size == size ? (long)info->offset : -EINVAL;
	}
	return -ENOENT;
}

static struct bpf_map *nodeprof_find_rodata(struct bpf_object *object)
{
	struct bpf_map *map;
	bpf_object__for_each_map(map, object) {
		const char *name = bpf_map__name(map);
		size_t len = strlen(name);
		if (bpf_map__is_internal(map) && len >= 7 && strcmp(name + len - 7, ".rodata") == 0)
			return map;
	}
	return NULL;
}

int nodeprof_sampler_open(const struct nodeprof_config *config, uint32_t ringbuf_bytes,
			  struct nodeprof_sampler **out, char *log, size_t log_size)
{
	int err;
	*out = NULL;
	nodeprof_libbpf_log_len = 0;
	nodeprof_libbpf_log[0] = '\0';
	libbpf_set_print(nodeprof_libbpf_print);

	struct nodeprof_sampler *sampler = calloc(1, sizeof(*sampler));
	if (!sampler)
		return -ENOMEM;
	for (int i = 0; i < NODEPROF_MAX_CPUS; i++)
		sampler->perf_fds[i] = -1;

	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "nodeprof_sampler");
	sampler->object = bpf_object__open_mem(nodeprof_sampler_bpf_object,
					       nodeprof_sampler_bpf_object_size, &opts);
	if (!sampler->object) {
		err = -errno;
		goto fail;
	}
	sampler->program = bpf_object__find_program_by_name(sampler->object, "nodeprof_sample_cpu");
	sampler->counters = bpf_object__find_map_by_name(sampler->object, "counters");
	sampler->selected = bpf_object__find_map_by_name(sampler->object, "selected_pids");
	sampler->thread_ctx = bpf_object__find_map_by_name(sampler->object, "thread_ctx_procs");
	struct bpf_map *samples = bpf_object__find_map_by_name(sampler->object, "samples");
	struct bpf_map *rodata = nodeprof_find_rodata(sampler->object);
	if (!sampler->program || !sampler->counters || !sampler->selected || !sampler->thread_ctx ||
	    !samples || !rodata) {
		err = -ENOENT;
		goto fail;
	}
	size_t rodata_size = 0;
	/* libbpf 1.1 returns const; the buffer is ours to fill until load (libbpf >= 1.2 drops the
	 * const). */
	void *initial = (void *)(uintptr_t)bpf_map__initial_value(rodata, &rodata_size);
	long offset = nodeprof_rodata_offset(sampler->object, "nodeprof_config", sizeof(*config));
	if (!initial || offset < 0 || (size_t)offset + sizeof(*config) > rodata_size) {
		err = offset < 0 ? (int)offset : -EINVAL;
		goto fail;
	}
	memcpy((char *)initial + offset, config, sizeof(*config));
	err = bpf_map__set_max_entries(samples, ringbuf_bytes);
	if (err)
		goto fail;

	err = bpf_object__load(sampler->object);
	if (err)
		goto fail;
	*out = sampler;
	return 0;
fail:
	nodeprof_copy_log(log, log_size);
	nodeprof_sampler_close(sampler);
	return err < 0 ? err : -EINVAL;
}

int nodeprof_sampler_select_pid(struct nodeprof_sampler *sampler, uint32_t pid)
{
	__u8 one = 1;
	int err = bpf_map__update_elem(sampler->selected, &pid, sizeof(pid), &one, sizeof(one),
				       BPF_ANY);
	return err < 0 ? err : 0;
}

int nodeprof_sampler_set_thread_ctx(struct nodeprof_sampler *sampler, uint32_t pid,
				    const struct nodeprof_thread_ctx_info *info)
{
	int err;
	if (info)
		err = bpf_map__update_elem(sampler->thread_ctx, &pid, sizeof(pid), info,
					   sizeof(*info), BPF_ANY);
	else
		err = bpf_map__delete_elem(sampler->thread_ctx, &pid, sizeof(pid), 0);
	if (!info && err == -ENOENT)
		return 0;
	return err < 0 ? err : 0;
}

int nodeprof_sampler_attach_cpu(struct nodeprof_sampler *sampler, int cpu, uint64_t frequency)
{
	if (cpu < 0 || cpu >= NODEPROF_MAX_CPUS)
		return -EINVAL;
	if (sampler->perf_fds[cpu] >= 0)
		return -EEXIST;
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_SOFTWARE;
	attr.config = PERF_COUNT_SW_CPU_CLOCK;
	attr.freq = 1;
	attr.sample_freq = frequency;
	long fd = syscall(SYS_perf_event_open, &attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct bpf_link *link = bpf_program__attach_perf_event(sampler->program, (int)fd);
	if (!link) {
		int err = -errno;
		close((int)fd);
		return err;
	}
	sampler->perf_fds[cpu] = (int)fd;
	sampler->links[cpu] = link;
	sampler->attached++;
	return 0;
}

/* Most records one poll hands over, and longest it spends handing them over: a consumer slower
 * than the producers would otherwise stay in libbpf's loop for as long as records keep coming,
 * and never get back to its own work (closing windows, stopping on time). */
#define NODEPROF_POLL_BUDGET 8192
#define NODEPROF_POLL_CONSUME_NS 100000000ull
static uint64_t nodeprof_monotonic_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

/* What the callback returns to make libbpf stop (it keeps the record just delivered). */
#define NODEPROF_BUDGET_SPENT (-ECANCELED)

static int nodeprof_ring_callback(void *context, void *data, size_t size)
{
	struct nodeprof_sampler *sampler = context;
	int rc = sampler->consumer(sampler->consumer_context, data, size);
	if (rc < 0)
		return rc;
	sampler->delivered++;
	if (sampler->delivered >= NODEPROF_POLL_BUDGET)
		return NODEPROF_BUDGET_SPENT;
	if (sampler->delivered % 16 == 0 && nodeprof_monotonic_ns() >= sampler->consume_deadline)
		return NODEPROF_BUDGET_SPENT;
	return 0;
}

int nodeprof_sampler_set_consumer(struct nodeprof_sampler *sampler, nodeprof_sample_fn fn,
				  void *context)
{
	if (sampler->ring)
		return -EEXIST;
	sampler->consumer = fn;
	sampler->consumer_context = context;
	struct bpf_map *samples = bpf_object__find_map_by_name(sampler->object, "samples");
	if (!samples)
		return -ENOENT;
	sampler->ring =
		ring_buffer__new(bpf_map__fd(samples), nodeprof_ring_callback, sampler, NULL);
	if (!sampler->ring)
		return -errno;
	return 0;
}

int nodeprof_sampler_poll(struct nodeprof_sampler *sampler, int timeout_ms)
{
	if (!sampler->ring)
		return -EINVAL;
	/* The program wakes us only when the ring fills up (config.wakeup_bytes), so after the
	 * wait (woken or timed out) always consume whatever is there. */
	sampler->delivered = 0;
	/* The whole call: the wait (at most timeout_ms) and then at most 100 ms of records. */
	sampler->consume_deadline = nodeprof_monotonic_ns() + NODEPROF_POLL_CONSUME_NS +
				    (timeout_ms > 0 ? (uint64_t)timeout_ms * 1000000ull : 0);
	int n = ring_buffer__poll(sampler->ring, timeout_ms);
	if (n == NODEPROF_BUDGET_SPENT)
		return sampler->delivered;
	if (n < 0 && n != -EINTR)
		return n;
	int more = ring_buffer__consume(sampler->ring);
	if (more < 0 && more != NODEPROF_BUDGET_SPENT)
		return more;
	return sampler->delivered;
}

int nodeprof_sampler_read_counters(const struct nodeprof_sampler *sampler, uint64_t *out)
{
	int cpus = libbpf_num_possible_cpus();
	if (cpus <= 0)
		return cpus < 0 ? cpus : -EINVAL;
	__u64 *values = calloc((size_t)cpus, sizeof(__u64));
	if (!values)
		return -ENOMEM;
	int fd = bpf_map__fd(sampler->counters);
	for (__u32 key = 0; key < NODEPROF_COUNTER_MAX; key++) {
		out[key] = 0;
		if (bpf_map_lookup_elem(fd, &key, values) != 0) {
			int err = -errno;
			free(values);
			return err;
		}
		for (int c = 0; c < cpus; c++)
			out[key] += values[c];
	}
	free(values);
	return 0;
}

int nodeprof_sampler_program_stats(const struct nodeprof_sampler *sampler, uint64_t *run_time_ns,
				   uint64_t *run_count)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);
	memset(&info, 0, sizeof(info));
	int err = bpf_obj_get_info_by_fd(bpf_program__fd(sampler->program), &info, &len);
	if (err)
		return -errno;
	*run_time_ns = info.run_time_ns;
	*run_count = info.run_cnt;
	return 0;
}

int nodeprof_sampler_enable_bpf_stats(void)
{
	int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	return fd < 0 ? -errno : fd;
}

/* The id of tracepoint `category/name` from a tracefs under `root`, or -errno. */
static long nodeprof_tracepoint_id_under(const char *root, const char *category, const char *name)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/events/%s/%s/id", root, category, name);
	FILE *file = fopen(path, "re");
	if (!file)
		return -errno;
	long id = -1;
	int matched = fscanf(file, "%ld", &id);
	fclose(file);
	return matched == 1 && id >= 0 ? id : -EINVAL;
}

/* The id of a tracepoint: from tracefs where it is mounted, else from a private tracefs mount
 * made just for the lookup and detached at once (ids are global; nothing stays mounted). */
static long nodeprof_tracepoint_id(const char *category, const char *name)
{
	static const char *const roots[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
	long id = -ENOENT;
	for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
		id = nodeprof_tracepoint_id_under(roots[i], category, name);
		if (id >= 0)
			return id;
	}
	char dir[] = "/tmp/nodeprof-tracefs-XXXXXX";
	if (!mkdtemp(dir))
		return -errno;
	if (mount("nodev", dir, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) !=
	    0) {
		id = -errno;
	} else {
		id = nodeprof_tracepoint_id_under(dir, category, name);
		umount2(dir, MNT_DETACH);
	}
	rmdir(dir);
	return id;
}

int nodeprof_sampler_attach_process_events(struct nodeprof_sampler *sampler, int *context_error)
{
	*context_error = 0;
	if (sampler->exec_link || sampler->exit_link)
		return -EEXIST;
	struct bpf_program *exec =
		bpf_object__find_program_by_name(sampler->object, "nodeprof_process_exec");
	struct bpf_program *exit =
		bpf_object__find_program_by_name(sampler->object, "nodeprof_process_exit");
	struct bpf_program *context =
		bpf_object__find_program_by_name(sampler->object, "nodeprof_process_context");
	if (!exec || !exit || !context)
		return -ENOENT;
	sampler->exec_link = bpf_program__attach_raw_tracepoint(exec, "sched_process_exec");
	if (!sampler->exec_link)
		return -errno;
	sampler->exit_link = bpf_program__attach_raw_tracepoint(exit, "sched_process_exit");
	if (!sampler->exit_link)
		return -errno;

	/* Optional: without it, a context published after a process was first seen is found by
	 * the periodic rescan instead. */
	long id = nodeprof_tracepoint_id("syscalls", "sys_enter_prctl");
	if (id < 0) {
		*context_error = (int)-id;
		return 0;
	}
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.size = sizeof(attr);
	attr.type = PERF_TYPE_TRACEPOINT;
	attr.config = (__u64)id;
	attr.sample_period = 1;
	attr.wakeup_events = 1;
	/* A BPF program on a tracepoint runs on every CPU, whatever CPU the event was opened on. */
	long fd = syscall(SYS_perf_event_open, &attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		*context_error = errno;
		return 0;
	}
	sampler->context_link = bpf_program__attach_perf_event(context, (int)fd);
	if (!sampler->context_link) {
		*context_error = errno;
		close((int)fd);
	}
	return 0;
}

void nodeprof_sampler_close(struct nodeprof_sampler *sampler)
{
	if (!sampler)
		return;
	/* Destroying a perf-event link also closes its perf event fd. */
	for (int i = 0; i < NODEPROF_MAX_CPUS; i++) {
		if (sampler->links[i])
			bpf_link__destroy(sampler->links[i]);
		else if (sampler->perf_fds[i] >= 0)
			close(sampler->perf_fds[i]);
	}
	bpf_link__destroy(sampler->exec_link);
	bpf_link__destroy(sampler->exit_link);
	bpf_link__destroy(sampler->context_link);
	if (sampler->ring)
		ring_buffer__free(sampler->ring);
	if (sampler->object)
		bpf_object__close(sampler->object);
	free(sampler);
}

int nodeprof_sampler_btf_struct_layout(const char *struct_name, const char *member, uint32_t *size,
				       uint32_t *member_offset)
{
	libbpf_set_print(nodeprof_libbpf_print);
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "nodeprof_sampler");
	struct bpf_object *object = bpf_object__open_mem(nodeprof_sampler_bpf_object,
							 nodeprof_sampler_bpf_object_size, &opts);
	if (!object)
		return -errno;
	struct btf *btf = bpf_object__btf(object);
	int result = -ENOENT;
	__s32 id = btf ? btf__find_by_name_kind(btf, struct_name, BTF_KIND_STRUCT) : -ENOENT;
	if (id > 0) {
		const struct btf_type *type = btf__type_by_id(btf, (__u32)id);
		*size = type->size;
		const struct btf_member *m = btf_members(type);
		for (__u16 i = 0; i < btf_vlen(type); i++, m++) {
			const char *name = btf__name_by_offset(btf, m->name_off);
			if (name && strcmp(name, member) == 0) {
				*member_offset = btf_member_bit_offset(type, i) / 8;
				result = 0;
				break;
			}
		}
	}
	bpf_object__close(object);
	return result;
}
