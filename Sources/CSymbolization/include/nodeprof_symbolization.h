// C shims for the Symbolization module: demanglers that live in C/C++ runtimes.
//
// Every exported symbol carries this target's prefix, `nodeprof_symbolization_`. The
// demanglers return a string allocated with malloc (the caller frees it with free()) or NULL
// when the input is not a name the demangler understands.
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Demangles an Itanium C++ ABI name (`_Z...`) with the C++ runtime's `__cxa_demangle`.
/// Also accepts Rust legacy names, which use the same encoding.
/// Returns a malloc'd NUL-terminated string, or NULL when `mangled` is not a valid name.
char *nodeprof_symbolization_cxa_demangle(const char *mangled);

/// Demangles a Swift name (`$s...`, `_T0...`) with the Swift runtime's `swift_demangle`.
/// `length` is the length of `mangled` in bytes (it need not be NUL-terminated).
/// Returns a malloc'd NUL-terminated string, or NULL when `mangled` is not a Swift name.
char *nodeprof_symbolization_swift_demangle(const char *mangled, size_t length);

/// The address of this process's vDSO image (`getauxval(AT_SYSINFO_EHDR)`), or 0.
uintptr_t nodeprof_symbolization_vdso_base(void);

#ifdef __cplusplus
}
#endif
