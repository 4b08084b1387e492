#include "nodeprof_symbolization.h"

#include <stdlib.h>
#include <sys/auxv.h>

// Declared here rather than through <cxxabi.h>, which is C++ only. The C++ runtime
// (libstdc++, linked by Package.swift) exports it with C linkage.
extern char *__cxa_demangle(const char *mangled_name, char *output_buffer, size_t *length,
			    int *status);

// Exported by libswiftCore, which every Swift program links. Flags must be 0.
extern char *swift_demangle(const char *mangled_name, size_t mangled_name_length,
			    char *output_buffer, size_t *output_buffer_size, uint32_t flags);

char *nodeprof_symbolization_cxa_demangle(const char *mangled)
{
	if (mangled == NULL) {
		return NULL;
	}
	int status = 0;
	// A NULL buffer makes the runtime allocate the result with malloc.
	char *result = __cxa_demangle(mangled, NULL, NULL, &status);
	if (status != 0) {
		free(result);
		return NULL;
	}
	return result;
}

char *nodeprof_symbolization_swift_demangle(const char *mangled, size_t length)
{
	if (mangled == NULL || length == 0) {
		return NULL;
	}
	// A NULL buffer makes the runtime allocate the result with malloc; NULL means "not Swift".
	return swift_demangle(mangled, length, NULL, NULL, 0);
}

uintptr_t nodeprof_symbolization_vdso_base(void)
{
	return (uintptr_t)getauxval(AT_SYSINFO_EHDR);
}
