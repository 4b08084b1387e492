/// Symbolization: addresses of kernel and user stacks to function names.
///
/// - `ELF/`: a self-contained ELF64 reader (``ELFFile``), also built alone by the fuzzer.
/// - ``ProcessMaps``: `/proc/PID/maps`; ``KernelSymbols``: `/proc/kallsyms`.
/// - ``Demangler``: C++, Rust legacy and Swift names.
/// - ``Symbolizer``: the pipeline stage, with the caches that tie these together.
enum SymbolizationModule {}
