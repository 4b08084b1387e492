/* New processes for hack/bench section 11: every 100 ms a child that burns CPU for 400 ms and
 * exits; even ones first publish a process context announcing thread context (the writer
 * library), odd ones publish nothing. Prints each child's pid, then "done". */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "otel_context.h"

static volatile unsigned long sink;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) static void burn(double seconds)
{
	double until = now() + seconds;
	while (now() < until)
		for (int i = 0; i < 10000; i++)
			sink += (unsigned long)i;
}

int main(int argc, char **argv)
{
	int count = argc > 1 ? atoi(argv[1]) : 40;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < count; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (i % 2 == 0) {
				otel_kv resource[] = {{"service.name", "bench-publisher"}};
				const char *keys[] = {"http.route"};
				if (otel_process_context_publish(resource, 1, 0, 0, keys, 1) != 0)
					_exit(2);
			}
			burn(0.4);
			_exit(0);
		}
		printf("%d %s\n", pid, i % 2 == 0 ? "publisher" : "plain");
		usleep(100000);
	}
	while (wait(NULL) > 0) {
	}
	printf("done\n");
	return 0;
}
