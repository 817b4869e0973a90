#include <sys/prctl.h>
#include <sys/resource.h>

#include "harden.h"

void
harden_process(void)
{
	struct rlimit rl = { 0, 0 };

	setrlimit(RLIMIT_CORE, &rl);
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
