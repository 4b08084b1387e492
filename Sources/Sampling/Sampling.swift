// Sampling: BPF sampler.
