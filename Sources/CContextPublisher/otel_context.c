// The OpenTelemetry process and thread context writer (OTEP 4719, OTEP 4947).
#define _GNU_SOURCE
#include "otel_context.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#ifndef MFD_CLOEXEC
#define MFD_CLOEXEC 0x0001U
#endif
#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif

// Not in every libc's headers; values from the kernel's uapi.
#define OTEL_PR_SET_VMA 0x53564d41
#define OTEL_PR_SET_VMA_ANON_NAME 0

// MARK: Thread context

_Static_assert(offsetof(otel_thread_record, trace_id) == 0, "trace_id at 0");
_Static_assert(offsetof(otel_thread_record, span_id) == 16, "span_id at 16");
_Static_assert(offsetof(otel_thread_record, valid) == 24, "valid at 24");
_Static_assert(offsetof(otel_thread_record, trace_flags) == 25, "trace_flags at 25");
_Static_assert(offsetof(otel_thread_record, attrs_data_size) == 26, "attrs_data_size at 26");
_Static_assert(offsetof(otel_thread_record, attrs_data) == 28, "attrs_data at 28");
_Static_assert(sizeof(otel_thread_record) == 640, "record is 640 bytes");
_Static_assert(_Alignof(otel_thread_record) >= 2, "record is at least 2-byte aligned");
_Static_assert(sizeof(otel_process_context_header) == 32, "header is 32 bytes");
_Static_assert(offsetof(otel_process_context_header, monotonic_published_at_ns) == 16,
	       "timestamp at 16");
_Static_assert(offsetof(otel_process_context_header, payload) == 24, "payload at 24");

__attribute__((visibility("default"))) __thread void *otel_thread_ctx_v1 = NULL;

// Two buffers per thread for otel_thread_ctx_store: the attached one is never written, so a
// sample that interrupts a store sees either the old record or the new one, whole.
static __thread otel_thread_record otel_thread_buffers[2];

void otel_thread_record_init(otel_thread_record *record, const uint8_t *trace_id,
			     const uint8_t *span_id, uint8_t trace_flags)
{
	if (trace_id != NULL) {
		memcpy(record->trace_id, trace_id, sizeof(record->trace_id));
	} else {
		memset(record->trace_id, 0, sizeof(record->trace_id));
	}
	if (span_id != NULL) {
		memcpy(record->span_id, span_id, sizeof(record->span_id));
	} else {
		memset(record->span_id, 0, sizeof(record->span_id));
	}
	record->valid = 0;
	record->trace_flags = trace_flags;
	record->attrs_data_size = 0;
}

bool otel_thread_record_add_attribute(otel_thread_record *record, uint8_t key_index,
				      const char *value, size_t length)
{
	if (value == NULL && length > 0) {
		return false;
	}
	if (length > OTEL_THREAD_RECORD_VALUE_MAX) {
		length = OTEL_THREAD_RECORD_VALUE_MAX;
		// Back off over continuation bytes (10xxxxxx) so the cut falls on a character
		// start.
		while (length > 0 && ((unsigned char)value[length] & 0xC0) == 0x80) {
			length--;
		}
	}
	size_t used = record->attrs_data_size;
	if (used > OTEL_THREAD_RECORD_ATTRS_CAPACITY ||
	    OTEL_THREAD_RECORD_ATTRS_CAPACITY - used < 2 + length) {
		return false;
	}
	record->attrs_data[used] = key_index;
	record->attrs_data[used + 1] = (uint8_t)length;
	if (length > 0) {
		memcpy(&record->attrs_data[used + 2], value, length);
	}
	record->attrs_data_size = (uint16_t)(used + 2 + length);
	return true;
}

void otel_thread_ctx_set(otel_thread_record *record)
{
	if (record == NULL) {
		otel_thread_ctx_clear();
		return;
	}
	// Only this thread writes, and the profiler reads while this thread is interrupted:
	// compiler fences suffice (OTEP 4947, Consistency).
	atomic_signal_fence(memory_order_seq_cst);
	record->valid = 1;
	atomic_signal_fence(memory_order_seq_cst);
	otel_thread_ctx_v1 = record;
	atomic_signal_fence(memory_order_seq_cst);
}

void otel_thread_ctx_store_span(const uint8_t *trace_id, const uint8_t *span_id,
				uint8_t trace_flags, const uint8_t *attrs, size_t attrs_size)
{
	otel_thread_record *target = &otel_thread_buffers[0];
	if (otel_thread_ctx_v1 == target) {
		target = &otel_thread_buffers[1];
	}
	target->valid = 0;
	atomic_signal_fence(memory_order_seq_cst);
	if (attrs == NULL || attrs_size > OTEL_THREAD_RECORD_ATTRS_CAPACITY) {
		attrs_size = attrs == NULL ? 0 : OTEL_THREAD_RECORD_ATTRS_CAPACITY;
	}
	// Header fields and only the used attribute bytes: the common case copies 28 bytes.
	memcpy(target->trace_id, trace_id, sizeof(target->trace_id));
	memcpy(target->span_id, span_id, sizeof(target->span_id));
	target->trace_flags = trace_flags;
	target->attrs_data_size = (uint16_t)attrs_size;
	if (attrs_size > 0) {
		memcpy(target->attrs_data, attrs, attrs_size);
	}
	otel_thread_ctx_set(target);
}

void otel_thread_ctx_store(const otel_thread_record *record)
{
	if (record == NULL) {
		otel_thread_ctx_clear();
		return;
	}
	otel_thread_ctx_store_span(record->trace_id, record->span_id, record->trace_flags,
				   record->attrs_data, record->attrs_data_size);
}

void otel_thread_ctx_clear(void)
{
	atomic_signal_fence(memory_order_seq_cst);
	otel_thread_ctx_v1 = NULL;
	atomic_signal_fence(memory_order_seq_cst);
}

otel_thread_record *otel_thread_ctx_get(void)
{
	return (otel_thread_record *)otel_thread_ctx_v1;
}

bool otel_thread_ctx_is_library_owned(const otel_thread_record *record)
{
	return record == &otel_thread_buffers[0] || record == &otel_thread_buffers[1];
}

// MARK: Protobuf encoding (only what the process context needs)

// Wire types.
#define PB_VARINT 0
#define PB_I64 1
#define PB_LEN 2

static size_t pb_varint_size(uint64_t value)
{
	size_t size = 1;
	while (value >= 0x80) {
		value >>= 7;
		size++;
	}
	return size;
}

// A field with a length-delimited body of `body` bytes: tag + length + body.
static size_t pb_len_field_size(size_t body)
{
	return 1 + pb_varint_size(body) + body;
}

struct pb_writer {
	uint8_t *at;
};

static void pb_put_varint(struct pb_writer *w, uint64_t value)
{
	while (value >= 0x80) {
		*w->at++ = (uint8_t)(value | 0x80);
		value >>= 7;
	}
	*w->at++ = (uint8_t)value;
}

// Field numbers here are all below 16, so the tag is one byte.
static void pb_put_len_header(struct pb_writer *w, uint32_t field, size_t body)
{
	*w->at++ = (uint8_t)((field << 3) | PB_LEN);
	pb_put_varint(w, body);
}

static void pb_put_bytes(struct pb_writer *w, uint32_t field, const char *bytes, size_t length)
{
	pb_put_len_header(w, field, length);
	memcpy(w->at, bytes, length);
	w->at += length;
}

// AnyValue{string_value (1)} body size.
static size_t any_string_size(const char *value)
{
	return pb_len_field_size(strlen(value));
}

// KeyValue{key (1), value (2): AnyValue{string_value}} body size.
static size_t kv_string_size(const char *key, const char *value)
{
	return pb_len_field_size(strlen(key)) + pb_len_field_size(any_string_size(value));
}

static void put_kv_string(struct pb_writer *w, uint32_t field, const char *key, const char *value)
{
	pb_put_len_header(w, field, kv_string_size(key, value));
	pb_put_bytes(w, 1, key, strlen(key));
	pb_put_len_header(w, 2, any_string_size(value));
	pb_put_bytes(w, 1, value, strlen(value));
}

// ArrayValue{values (1): repeated AnyValue{string_value}} body size.
static size_t array_strings_size(const char *const *values, size_t n)
{
	size_t size = 0;
	for (size_t i = 0; i < n; i++) {
		size += pb_len_field_size(any_string_size(values[i]));
	}
	return size;
}

// KeyValue{key, value: AnyValue{array_value (5): ArrayValue}} body size.
static size_t kv_array_size(const char *key, const char *const *values, size_t n)
{
	return pb_len_field_size(strlen(key)) +
	       pb_len_field_size(pb_len_field_size(array_strings_size(values, n)));
}

static void put_kv_array(struct pb_writer *w, uint32_t field, const char *key,
			 const char *const *values, size_t n)
{
	size_t array = array_strings_size(values, n);
	pb_put_len_header(w, field, kv_array_size(key, values, n));
	pb_put_bytes(w, 1, key, strlen(key));
	pb_put_len_header(w, 2, pb_len_field_size(array));
	pb_put_len_header(w, 5, array);
	for (size_t i = 0; i < n; i++) {
		pb_put_len_header(w, 1, any_string_size(values[i]));
		pb_put_bytes(w, 1, values[i], strlen(values[i]));
	}
}

static const char schema_key[] = "threadlocal.schema_version";
static const char schema_value[] = "tlsdesc_v1_dev";
static const char key_map_key[] = "threadlocal.attribute_key_map";

// Encodes ProcessContext into a malloc'd buffer. Returns 0 or -errno.
static int encode_process_context(const otel_kv *resource, size_t n_resource, const otel_kv *extra,
				  size_t n_extra, const char *const *keys, size_t n_keys,
				  uint8_t **out, size_t *out_size)
{
	// Sizes are summed in size_t from strings already in memory; the 64 KiB check below
	// happens before any write. Bail out early on absurd inputs to keep sums far from overflow.
	size_t resource_body = 0;
	for (size_t i = 0; i < n_resource; i++) {
		resource_body +=
			pb_len_field_size(kv_string_size(resource[i].key, resource[i].value));
		if (resource_body > OTEL_PROCESS_CONTEXT_MAX_PAYLOAD) {
			return -E2BIG;
		}
	}
	size_t total = pb_len_field_size(resource_body);
	for (size_t i = 0; i < n_extra; i++) {
		total += pb_len_field_size(kv_string_size(extra[i].key, extra[i].value));
		if (total > OTEL_PROCESS_CONTEXT_MAX_PAYLOAD) {
			return -E2BIG;
		}
	}
	total += pb_len_field_size(kv_string_size(schema_key, schema_value));
	for (size_t i = 0; i < n_keys; i++) {
		if (strlen(keys[i]) > OTEL_PROCESS_CONTEXT_MAX_PAYLOAD) {
			return -E2BIG;
		}
	}
	total += pb_len_field_size(kv_array_size(key_map_key, keys, n_keys));
	if (total > OTEL_PROCESS_CONTEXT_MAX_PAYLOAD) {
		return -E2BIG;
	}

	uint8_t *buffer = malloc(total);
	if (buffer == NULL) {
		return -ENOMEM;
	}
	struct pb_writer w = {.at = buffer};
	pb_put_len_header(&w, 1, resource_body);
	for (size_t i = 0; i < n_resource; i++) {
		put_kv_string(&w, 1, resource[i].key, resource[i].value);
	}
	for (size_t i = 0; i < n_extra; i++) {
		put_kv_string(&w, 2, extra[i].key, extra[i].value);
	}
	put_kv_string(&w, 2, schema_key, schema_value);
	put_kv_array(&w, 2, key_map_key, keys, n_keys);
	if ((size_t)(w.at - buffer) != total) {
		free(buffer);
		return -EINVAL; // unreachable: size and write paths disagree
	}
	*out = buffer;
	*out_size = total;
	return 0;
}

// MARK: Process context

// One context per process. `lock` serialises publishers; readers are other processes and
// follow the seqlock on the header's timestamp.
static struct {
	pthread_mutex_t lock;
	otel_process_context_header *header; // the mapping, or NULL
	size_t mapping_size;
	uint8_t *payload;
	// The published key map, kept to enforce append-only updates: NUL-separated strings.
	char *keys;
	size_t keys_size;
	size_t n_keys;
	bool atfork_registered;
} otel_process_context = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t boottime_ns(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
	}
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void store_timestamp(otel_process_context_header *header, uint64_t value)
{
	__atomic_store_n(&header->monotonic_published_at_ns, value, __ATOMIC_RELAXED);
}

// MADV_DONTFORK leaves a child without the mapping: forget it there so the child can publish
// its own. The child's copy of the payload is freed; the lock is re-initialised (the child has
// one thread).
// Forgets the published state (the mapping is already gone or unmapped by the caller).
static void forget_published_state(void)
{
	otel_process_context.header = NULL;
	otel_process_context.mapping_size = 0;
	free(otel_process_context.payload);
	otel_process_context.payload = NULL;
	free(otel_process_context.keys);
	otel_process_context.keys = NULL;
	otel_process_context.keys_size = 0;
	otel_process_context.n_keys = 0;
}

static void otel_process_context_atfork_child(void)
{
	pthread_mutex_init(&otel_process_context.lock, NULL);
	forget_published_state();
}

static void name_mapping(void)
{
	// Fails without CONFIG_ANON_VMA_NAME; readers also find the memfd by its path.
	(void)prctl(OTEL_PR_SET_VMA, OTEL_PR_SET_VMA_ANON_NAME,
		    (unsigned long)otel_process_context.header, otel_process_context.mapping_size,
		    (unsigned long)"OTEL_CTX");
}

static int create_mapping(void)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t size = page > 0 ? (size_t)page : 4096;
	void *address = MAP_FAILED;
	int fd = memfd_create("OTEL_CTX", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
	if (fd < 0) {
		// Kernels before 6.3 reject MFD_NOEXEC_SEAL with EINVAL.
		fd = memfd_create("OTEL_CTX", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	}
	if (fd >= 0) {
		if (ftruncate(fd, (off_t)size) == 0) {
			address = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		}
		close(fd);
	}
	if (address == MAP_FAILED) {
		address = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);
		if (address == MAP_FAILED) {
			return -errno;
		}
	}
	(void)madvise(address, size, MADV_DONTFORK);
	otel_process_context.header = address;
	otel_process_context.mapping_size = size;
	return 0;
}

// Checks the new key map extends the published one, and builds its stored copy.
static int check_and_copy_keys(const char *const *keys, size_t n_keys, char **out, size_t *out_size)
{
	if (n_keys < otel_process_context.n_keys) {
		return -EINVAL;
	}
	size_t size = 0;
	const char *old = otel_process_context.keys;
	for (size_t i = 0; i < n_keys; i++) {
		size_t length = strlen(keys[i]) + 1;
		if (i < otel_process_context.n_keys) {
			if (strcmp(old, keys[i]) != 0) {
				return -EINVAL;
			}
			old += length;
		}
		size += length;
	}
	char *copy = malloc(size > 0 ? size : 1);
	if (copy == NULL) {
		return -ENOMEM;
	}
	char *at = copy;
	for (size_t i = 0; i < n_keys; i++) {
		size_t length = strlen(keys[i]) + 1;
		memcpy(at, keys[i], length);
		at += length;
	}
	*out = copy;
	*out_size = size;
	return 0;
}

static bool kvs_valid(const otel_kv *kvs, size_t n)
{
	if (n > 0 && kvs == NULL) {
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (kvs[i].key == NULL || kvs[i].value == NULL) {
			return false;
		}
	}
	return true;
}

int otel_process_context_publish(const otel_kv *resource, size_t n_resource, const otel_kv *extra,
				 size_t n_extra, const char *const *attribute_keys, size_t n_keys)
{
	if (!kvs_valid(resource, n_resource) || !kvs_valid(extra, n_extra)) {
		return -EINVAL;
	}
	if (n_keys > OTEL_PROCESS_CONTEXT_MAX_KEYS || (n_keys > 0 && attribute_keys == NULL)) {
		return -EINVAL;
	}
	for (size_t i = 0; i < n_keys; i++) {
		if (attribute_keys[i] == NULL) {
			return -EINVAL;
		}
	}

	uint8_t *payload = NULL;
	size_t payload_size = 0;
	int rc = encode_process_context(resource, n_resource, extra, n_extra, attribute_keys,
					n_keys, &payload, &payload_size);
	if (rc != 0) {
		return rc;
	}

	pthread_mutex_lock(&otel_process_context.lock);
	char *keys = NULL;
	size_t keys_size = 0;
	rc = check_and_copy_keys(attribute_keys, n_keys, &keys, &keys_size);
	if (rc != 0) {
		goto fail;
	}
	if (!otel_process_context.atfork_registered) {
		if (pthread_atfork(NULL, NULL, otel_process_context_atfork_child) == 0) {
			otel_process_context.atfork_registered = true;
		}
	}

	otel_process_context_header *header = otel_process_context.header;
	uint8_t *old_payload = otel_process_context.payload;
	if (header == NULL) {
		rc = create_mapping();
		if (rc != 0) {
			goto fail;
		}
		header = otel_process_context.header;
		// The mapping is fresh (zero-filled), so the timestamp already reads 0.
		memcpy(header->signature, "OTEL_CTX", 8);
		header->version = 2;
		header->payload_size = (uint32_t)payload_size;
		header->payload = (uint64_t)(uintptr_t)payload;
		atomic_thread_fence(memory_order_seq_cst);
		store_timestamp(header, boottime_ns());
	} else {
		uint64_t previous = header->monotonic_published_at_ns;
		store_timestamp(header, 0);
		atomic_thread_fence(memory_order_seq_cst);
		header->payload = (uint64_t)(uintptr_t)payload;
		header->payload_size = (uint32_t)payload_size;
		atomic_thread_fence(memory_order_seq_cst);
		uint64_t now = boottime_ns();
		store_timestamp(header, now > previous ? now : previous + 1);
	}
	otel_process_context.payload = payload;
	free(old_payload);
	free(otel_process_context.keys);
	otel_process_context.keys = keys;
	otel_process_context.keys_size = keys_size;
	otel_process_context.n_keys = n_keys;
	name_mapping();
	pthread_mutex_unlock(&otel_process_context.lock);
	return 0;

fail:
	pthread_mutex_unlock(&otel_process_context.lock);
	free(keys);
	free(payload);
	return rc;
}

void otel_process_context_unpublish(void)
{
	pthread_mutex_lock(&otel_process_context.lock);
	otel_process_context_header *header = otel_process_context.header;
	if (header != NULL) {
		store_timestamp(header, 0);
		atomic_thread_fence(memory_order_seq_cst);
		munmap(header, otel_process_context.mapping_size);
	}
	forget_published_state();
	pthread_mutex_unlock(&otel_process_context.lock);
}

const otel_process_context_header *otel_process_context_mapping(void)
{
	pthread_mutex_lock(&otel_process_context.lock);
	const otel_process_context_header *header = otel_process_context.header;
	pthread_mutex_unlock(&otel_process_context.lock);
	return header;
}
