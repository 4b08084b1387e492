/// Reads what instrumented processes publish about themselves (OTEP 4719 process context, OTEP 4947 thread context). Being written: see issue 4.
enum ProcessContextModule {}
