#include "otel_context.h"
