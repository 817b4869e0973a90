/* Tokens from outside: capabilities presented by agents, certificates and
 * delegations installed by humans (and re-delegations by agents), and the
 * signing inputs the signer checks before any key is touched, and the
 * operation an agent asks a capability for.  The first byte picks the
 * parser; a delegation that parses also has its scope and policy checked
 * against itself (they must narrow to themselves); an operation that
 * validates must be expressible in canonical JSON (it goes into the
 * capability and the audit log). */
#include <string.h>

#include "alg.h"
#include "buf.h"
#include "cap.h"
#include "cert.h"
#include "check.h"
#include "config.h"
#include "deleg.h"
#include "fuzz.h"
#include "jcs.h"
#include "jws.h"
#include "policy.h"
#include "scope.h"

static void
one_jws(const char *p, size_t n, int with_sig)
{
	struct jws *j = NULL;

	if ((with_sig ? jws_parse : jws_parse_input)(p, n, &j) != 0)
		return;
	FUZZ_ASSERT(j->token_len == n && j->input_len <= n);
	FUZZ_ASSERT(strlen(j->typ) <= JWS_TYP_MAX);
	FUZZ_ASSERT(strlen(j->kid) <= JWS_KID_MAX);
	FUZZ_ASSERT(!with_sig || (j->siglen > 0 && j->siglen <= TH_SIG_MAX));
	FUZZ_ASSERT(j->claims != NULL);
	jws_free(j);
}

static void
one_deleg(const char *p, size_t n)
{
	struct deleg *d = NULL;

	if (deleg_parse(p, n, &d) != 0)
		return;
	FUZZ_ASSERT(d->iss != NULL && d->sub != NULL && d->ops != NULL);
	FUZZ_ASSERT(scope_within(d->ops, d->ops) == 0);
	if (d->policy != NULL)
		FUZZ_ASSERT(policy_narrows(d->policy, d->policy) == 0);
	deleg_free(d);
}

/* op, repo, target and params separated by NUL, then the PR number in the
 * last 4 bytes. */
static void
one_op(const uint8_t *p, size_t n)
{
	struct cap_op op;
	char *field[4] = { op.op, op.repo, op.target, op.params };
	const size_t max[4] = { sizeof(op.op), sizeof(op.repo),
	    sizeof(op.target), sizeof(op.params) };
	struct json_object *o;
	struct buf *b;
	const uint8_t *end;
	size_t i, k;

	if (n < 4)
		return;
	memset(&op, 0, sizeof(op));
	op.pr = (int64_t)((uint32_t)p[n - 4] << 24 | (uint32_t)p[n - 3] << 16 |
	    (uint32_t)p[n - 2] << 8 | p[n - 1]);
	n -= 4;
	for (i = 0; i < 4; i++) {
		end = memchr(p, '\0', n);
		k = end != NULL ? (size_t)(end - p) : n;
		if (k >= max[i])
			return;
		memcpy(field[i], p, k);
		p += k;
		n -= k;
		if (n > 0) {
			p++;
			n--;
		}
	}
	if (cap_op_validate(&op) != 0)
		return;
	FUZZ_ASSERT((o = cap_op_json(&op)) != NULL);
	FUZZ_ASSERT((b = buf_new()) != NULL);
	FUZZ_ASSERT(jcs_encode(b, o) == 0);
	buf_free(b);
	json_object_put(o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct config cfg = { .app_id = "424242" };
	struct cert *c = NULL;
	const char *p = (const char *)data + 1;
	size_t n;

	if (size < 1)
		return 0;
	n = size - 1;
	switch (data[0] % 9) {
	case 0:
		one_jws(p, n, 1);
		break;
	case 1:
		one_jws(p, n, 0);
		break;
	case 2:
		if (cert_parse(p, n, &c) == 0)
			FUZZ_ASSERT(c->pub != NULL && c->sub != NULL);
		cert_free(c);
		break;
	case 3:
		one_deleg(p, n);
		break;
	case 8:
		one_op(data + 1, n);
		break;
	default:
		/* The signer's domain separation, for each purpose and both
		 * key algorithms, at a fixed time. */
		(void)check_sign_payload(&cfg, (enum purpose)(data[0] %
		    PURPOSE_COUNT), data[0] & 0x80 ? TH_ALG_RS256 : TH_ALG_ES256,
		    data + 1, n, 1764000000);
		break;
	}
	return 0;
}
