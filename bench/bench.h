/* What the benchmarks share: a monotonic clock in microseconds and the
 * sort their p50/p99 figures are read from. */
#ifndef TH_BENCH_H
#define TH_BENCH_H

#include <stdlib.h>
#include <time.h>

static inline double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static inline int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts n latencies in place, ascending: lat[n / 2] is p50, lat[n * 99 /
 * 100] p99. */
static inline void
sort_latencies(double *lat, size_t n)
{
	qsort(lat, n, sizeof(*lat), cmp_double);
}

#endif
