public import NodeprofCore

extension SamplerCounters {
    /// The sampler's counters as `/metrics` samples.
    public var metricSamples: [MetricSample] {
        [
            .counter("nodeprof_bpf_samples_seen_total", "Perf events the BPF program ran for.", seen),
            .counter("nodeprof_samples_received_total", "Samples read from the ring buffer.", received),
            .counter(
                "nodeprof_samples_dropped_total", "Samples lost, by reason.", lostRingBufferFull,
                labels: [("reason", "ring_buffer_full")]),
            .counter(
                "nodeprof_samples_dropped_total", "Samples lost, by reason.", malformedRecords,
                labels: [("reason", "malformed")]),
            .counter(
                "nodeprof_samples_dropped_total", "Samples lost, by reason.", internalErrors,
                labels: [("reason", "bpf_internal_error")]),
            .counter("nodeprof_samples_idle_total", "Samples of the idle task, dropped in the kernel.", idleDropped),
            .counter(
                "nodeprof_thread_context_samples_total",
                "Samples that carried the thread's span record (OTEP 4947 thread context).", threadContextsFound),
            .counter(
                "nodeprof_thread_context_unreadable_total",
                "Located thread-context variables or span records the BPF program could not read.",
                threadContextsUnreadable),
            .counter(
                "nodeprof_thread_context_invalid_total",
                "Samples whose thread had a span record attached that was not marked valid (sent without a span).",
                threadContextsInvalid),
            .counter(
                "nodeprof_process_events_total", "Process events (exec, exit, context published) from the kernel.",
                processEvents),
            .counter(
                "nodeprof_process_events_lost_total",
                "Process events lost because the ring buffer was full (the process table checks its entries then).",
                processEventsLost),
        ]
    }
}
