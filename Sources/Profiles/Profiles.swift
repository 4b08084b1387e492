// Profiles: the in-memory profile, encoders (pprof), reports.
