#include "nodeprof_symbolization.h"
