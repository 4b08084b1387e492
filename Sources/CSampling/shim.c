#include "nodeprof_sampling.h"
