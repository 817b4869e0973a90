#include <string.h>

#include "alg.h"

const char *
th_alg_name(enum th_alg alg)
{
	switch (alg) {
	case TH_ALG_ES256:	return "ES256";
	case TH_ALG_RS256:	return "RS256";
	default:		return "none";
	}
}

enum th_alg
th_alg_from_name(const char *name)
{
	if (strcmp(name, "ES256") == 0)
		return TH_ALG_ES256;
	if (strcmp(name, "RS256") == 0)
		return TH_ALG_RS256;
	return TH_ALG_NONE;
}
