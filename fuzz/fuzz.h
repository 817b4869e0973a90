/* libFuzzer entry point shared by the harnesses in this directory
 * (fuzz/README.md).  Each harness feeds one parser of outside input and
 * aborts only where the parser broke its own contract (a check the
 * sanitizers cannot make: an accepted input that does not round-trip, a
 * result outside its documented bounds). */
#ifndef TH_FUZZ_H
#define TH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: contract broken: %s\n",		\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

#endif
