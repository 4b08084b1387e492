// The OpenTelemetry process and thread context writer (OTEP 4719, OTEP 4947), for applications.
//
// Every exported symbol carries the `otel_` prefix. Build the shared-library form with
// `-mtls-dialect=gnu2` (TLSDESC). An executable that links this code statically must export the
// TLS variable so that profilers find it in .dynsym:
//   -Wl,--export-dynamic-symbol=otel_thread_ctx_v1
// See docs/context-publisher.md.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: Thread context (OTEP 4947)

/// Bytes of attribute entries a record can hold: the record stays within 640 bytes.
#define OTEL_THREAD_RECORD_ATTRS_CAPACITY 612
/// Longest attribute value in one entry (its length is one byte).
#define OTEL_THREAD_RECORD_VALUE_MAX 255

/// The per-thread record a profiler reads at sample time. Host endianness; every field sits at
/// its natural alignment, so the struct has no padding (asserted in otel_context.c).
typedef struct otel_thread_record {
	uint8_t trace_id[16];	  // W3C trace id; all zeros = no trace
	uint8_t span_id[8];	  // W3C span id
	uint8_t valid;		  // exactly 1 = valid; written last on attach
	uint8_t trace_flags;	  // W3C flags (bit 0 = sampled)
	uint16_t attrs_data_size; // bytes used in attrs_data
	// Entries [key index u8][length u8][value: length bytes UTF-8], packed.
	uint8_t attrs_data[OTEL_THREAD_RECORD_ATTRS_CAPACITY];
} otel_thread_record;

/// The TLS variable profilers look up by name: a pointer to the calling thread's current record,
/// or NULL. Default visibility so it lands in .dynsym of a shared library. Hidden from Swift
/// (which cannot import TLS variables): use otel_thread_ctx_get.
#ifndef __swift__
extern __thread void *otel_thread_ctx_v1 __attribute__((visibility("default")));
#endif

/// Fills `record`: ids and flags copied (NULL ids mean all zeros), no attributes, valid = 0.
void otel_thread_record_init(otel_thread_record *record, const uint8_t *trace_id,
			     const uint8_t *span_id, uint8_t trace_flags);

/// Appends the entry [key_index][length][value]. A value longer than 255 bytes is truncated to
/// at most 255 bytes, cut back to the start of a UTF-8 character so no code point is split.
/// Returns false, leaving the record unchanged, when the (truncated) entry does not fit in the
/// remaining attribute space or `value` is NULL with a non-zero length.
bool otel_thread_record_add_attribute(otel_thread_record *record, uint8_t key_index,
				      const char *value, size_t length);

/// Attaches `record` to the calling thread: sets record->valid = 1, then (after a compiler
/// fence) points otel_thread_ctx_v1 at it. The caller keeps the record alive and unchanged
/// until it is detached (otel_thread_ctx_clear, or another set/store). NULL detaches.
void otel_thread_ctx_set(otel_thread_record *record);

/// Copies `record` into one of two thread-local buffers owned by this library (the one not
/// currently attached), marks it valid and attaches it. No allocation; the caller's record
/// may be reused at once.
void otel_thread_ctx_store(const otel_thread_record *record);

/// otel_thread_ctx_store from parts, without a whole record to copy from: 16-byte trace id,
/// 8-byte span id, flags and `attrs_size` bytes of ready-made entries (at most 612 are taken).
/// This is what the Swift API uses.
void otel_thread_ctx_store_span(const uint8_t *trace_id, const uint8_t *span_id,
				uint8_t trace_flags, const uint8_t *attrs, size_t attrs_size);

/// Detaches: otel_thread_ctx_v1 = NULL.
void otel_thread_ctx_clear(void);

/// The calling thread's current record, or NULL.
otel_thread_record *otel_thread_ctx_get(void);

/// True when `record` is one of the calling thread's library-owned buffers (see
/// otel_thread_ctx_store): such a record must be copied, not re-attached, to be restored later.
bool otel_thread_ctx_is_library_owned(const otel_thread_record *record);

// MARK: Process context (OTEP 4719)

/// Mapping header: 32 bytes at the start of the OTEL_CTX mapping.
typedef struct otel_process_context_header {
	char signature[8];		    // "OTEL_CTX", not NUL-terminated
	uint32_t version;		    // 2
	uint32_t payload_size;		    // bytes of protobuf at `payload`
	uint64_t monotonic_published_at_ns; // CLOCK_BOOTTIME ns; 0 = update in progress
	uint64_t payload;		    // address of the payload in this process
} otel_process_context_header;

/// Most keys the thread attribute key map may hold (indexes are one byte).
#define OTEL_PROCESS_CONTEXT_MAX_KEYS 256
/// Largest payload the writer produces: readers reject bigger ones.
#define OTEL_PROCESS_CONTEXT_MAX_PAYLOAD 65536

/// A string key/value (both NUL-terminated UTF-8).
typedef struct otel_kv {
	const char *key;
	const char *value;
} otel_kv;

/// Publishes (first call) or updates (later calls) the process context: `resource` becomes
/// ProcessContext.resource, `extra` plus the thread-context keys (threadlocal.schema_version =
/// "tlsdesc_v1_dev", threadlocal.attribute_key_map = `attribute_keys`) become
/// ProcessContext.attributes. Thread-safe. Returns 0 or -errno:
///   -EINVAL  a NULL key/value, more than 256 attribute keys, or a key map that is not an
///            append-only extension of the one published before;
///   -E2BIG   the encoded payload exceeds 64 KiB;
///   -ENOMEM  or an errno of mmap when no mapping could be created.
/// The payload is heap memory; on update the previous payload is freed after the swap, so a
/// reader in the middle of a read may copy freed memory: it detects that because the timestamp
/// it re-reads has changed, and retries.
int otel_process_context_publish(const otel_kv *resource, size_t n_resource, const otel_kv *extra,
				 size_t n_extra, const char *const *attribute_keys, size_t n_keys);

/// Withdraws the context: timestamp 0, then munmap and free. For tests and orderly shutdown.
void otel_process_context_unpublish(void);

/// The mapping's address (the header), or NULL when nothing is published.
const otel_process_context_header *otel_process_context_mapping(void);

#ifdef __cplusplus
}
#endif
