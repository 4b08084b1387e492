// The OpenTelemetry process and thread context writer (OTEP 4719, OTEP 4947). Being written.
#pragma once
