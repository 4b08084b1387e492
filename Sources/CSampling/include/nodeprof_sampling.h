#pragma once
#include <bpf/libbpf.h>
