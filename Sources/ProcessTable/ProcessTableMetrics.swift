public import NodeprofCore
import ProcessContext

extension ProcessTableStatistics {
    /// The table's counts as `/metrics` samples, its contexts' among them.
    public var metricSamples: [MetricSample] {
        var samples: [MetricSample] = [
            .gauge("nodeprof_processes_tracked", "Processes in the process table.", Double(processes)),
            .counter(
                "nodeprof_process_table_reads_total", "Process files read, by file.", mapsReads,
                labels: [("file", "maps")]),
            .counter(
                "nodeprof_process_table_reads_total", "Process files read, by file.", executableReads,
                labels: [("file", "exe")]),
            .counter(
                "nodeprof_process_table_reads_total", "Process files read, by file.", commReads,
                labels: [("file", "comm")]),
            .counter(
                "nodeprof_process_table_reads_total", "Process files read, by file.", cgroups.misses,
                labels: [("file", "cgroup")]),
            .counter(
                "nodeprof_process_table_unreadable_total", "Processes gone before their first sample could be read.",
                processesUnreadable),
            .counter(
                "nodeprof_process_table_resynchronizations_total",
                "Times the kernel lost process events and the table checked its entries again.", resynchronizations),
            .gauge("nodeprof_cgroup_cache_entries", "Cgroups the agent has resolved.", Double(cgroupCacheEntries)),
        ]
        for (reason, count) in [
            ("exit", evictedOnExit), ("exec", evictedOnExec), ("full", evictedWhenFull),
            ("revalidation", evictedOnRevalidation),
        ] {
            samples.append(
                .counter(
                    "nodeprof_process_table_evictions_total", "Process table entries removed, by reason.", count,
                    labels: [("reason", reason)]))
        }
        return samples + contexts.metricSamples
    }
}

extension ProcessContextStatistics {
    /// What was read of the process and thread context processes publish.
    public var metricSamples: [MetricSample] {
        let contexts = self
        let reader = contexts.reader
        var samples: [MetricSample] = [
            .gauge(
                "nodeprof_process_contexts", "Processes known to publish a process context (OTEP 4719).",
                Double(contexts.processesWithContext))
        ]
        let lookups = [
            ("read", reader.reads), ("unchanged", reader.cacheHits), ("none", reader.withoutContext),
            ("bad_signature", reader.badSignature), ("bad_version", reader.badVersion), ("bad_size", reader.badSize),
            ("not_published", reader.notPublished), ("torn", reader.torn), ("unreadable", reader.unreadableMemory),
            ("decode_error", reader.decodeErrors), ("process_gone", reader.processesGone),
        ]
        for (result, count) in lookups {
            samples.append(
                .counter(
                    "nodeprof_process_context_lookups_total",
                    "Process-context lookups by result: read (payload decoded), unchanged (header only), none (no OTEL_CTX mapping), or why the context was refused.",
                    count, labels: [("result", result)]))
        }
        for (result, count) in [
            ("located", contexts.threadContextsLocated), ("unsupported", contexts.locateFailures),
            ("map_update_failed", contexts.mapUpdateFailures),
        ] {
            samples.append(
                .counter(
                    "nodeprof_thread_context_processes_total",
                    "Processes that announced thread context (OTEP 4947), by whether the sampler could follow their TLS variable.",
                    count, labels: [("result", result)]))
        }
        for (result, count) in [("decoded", contexts.recordsDecoded), ("invalid", contexts.recordsInvalid)] {
            samples.append(
                .counter(
                    "nodeprof_thread_context_records_total",
                    "Span records received from the sampler, by decoding result.",
                    count, labels: [("result", result)]))
        }
        samples.append(
            .counter(
                "nodeprof_thread_context_key_map_refreshes_total",
                "Process contexts read again because a span record used an attribute key index beyond the known map.",
                contexts.keyMapRefreshes))
        return samples
    }

}
