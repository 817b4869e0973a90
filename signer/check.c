#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "b64url.h"
#include "buf.h"
#include "check.h"
#include "err.h"
#include "json.h"
#include "jws.h"
#include "typ.h"

/* The header's alg must be the key's; its typ the purpose's (or absent, if
 * typ_optional). */
static int
check_header(const struct jws *j, enum th_alg want_alg, const char *want_typ,
    int typ_optional)
{
	if (j->alg != want_alg)
		return th_fail(TH_ERR_DENIED, "header alg %s, this key signs "
		    "only %s", th_alg_name(j->alg), th_alg_name(want_alg));
	if (j->typ[0] == '\0' && typ_optional)
		return 0;
	if (strcmp(j->typ, want_typ) != 0)
		return th_fail(TH_ERR_DENIED, "header typ \"%s\", this key signs "
		    "only \"%s\"", j->typ, want_typ);
	return 0;
}

static int
check_lifetime(struct json_object *claims, int64_t max, int64_t *iat_out)
{
	int64_t iat, exp;
	int r;

	if ((r = json_get_int64(claims, "iat", &iat)) != 0 ||
	    (r = json_get_int64(claims, "exp", &exp)) != 0)
		return th_fail(TH_ERR_DENIED, "claims: %s", th_errmsg(r));
	if (exp <= iat)
		return th_fail(TH_ERR_DENIED, "exp is not after iat");
	/* exp - iat, in [1, 2^64): as int64 it could overflow (iat far
	 * negative) and wrap to a lifetime that passes. */
	if ((uint64_t)exp - (uint64_t)iat > (uint64_t)max)
		return th_fail(TH_ERR_DENIED, "lifetime %" PRIu64 " s exceeds "
		    "%" PRId64 " s", (uint64_t)exp - (uint64_t)iat, max);
	*iat_out = iat;
	return 0;
}

/* Near the signer's clock: a token signed for a later time would let
 * whoever holds the socket for a moment stock up on tokens to use when
 * they are no longer allowed to ask. */
static int
check_fresh(int64_t iat, time_t now)
{
	if (iat < (int64_t)now - CHECK_IAT_PAST ||
	    iat > (int64_t)now + CHECK_IAT_FUTURE)
		return th_fail(TH_ERR_DENIED, "iat is %" PRId64 " s from the "
		    "signer's clock (allowed -%d..+%d)", iat - (int64_t)now,
		    CHECK_IAT_PAST, CHECK_IAT_FUTURE);
	return 0;
}

static int
check_github_jwt(const struct config *cfg, struct json_object *claims,
    time_t now)
{
	struct json_object *iss;
	char num[32];
	const char *s;
	int64_t iat;
	int r;

	if (!json_object_object_get_ex(claims, "iss", &iss))
		return th_fail(TH_ERR_DENIED, "claims: missing \"iss\"");
	if (json_object_is_type(iss, json_type_int)) {
		snprintf(num, sizeof(num), "%" PRId64,
		    json_object_get_int64(iss));
		s = num;
	} else if (json_object_is_type(iss, json_type_string))
		s = json_object_get_string(iss);
	else
		return th_fail(TH_ERR_DENIED, "iss is neither string nor "
		    "integer");
	if (strcmp(s, cfg->app_id) != 0)
		return th_fail(TH_ERR_DENIED, "iss \"%.64s\" is not the "
		    "configured App id", s);
	if ((r = check_lifetime(claims, GITHUB_JWT_TTL_MAX, &iat)) != 0)
		return r;
	return check_fresh(iat, now);
}

/* The audit key (a TPM-less deployment's countersignature) signs only
 * "threshold-audit-checkpoint:" followed by a 32-byte hash in base64url
 * (docs/audit-format.md). */
static int
check_checkpoint(const uint8_t *p, size_t len)
{
	static const char prefix[] = "threshold-audit-checkpoint:";
	size_t n = sizeof(prefix) - 1;
	struct buf *hash = NULL;
	int r;

	/* The payload is not a C string: the hash is decoded, not scanned
	 * (strspn read on past its end). */
	if ((hash = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if (len != n + JWS_HASH_LEN || memcmp(p, prefix, n) != 0 ||
	    b64url_decode(hash, (const char *)p + n, JWS_HASH_LEN) != 0 ||
	    buf_len(hash) != 32)
		r = th_fail(TH_ERR_DENIED, "the audit key signs only \"%s\" "
		    "and a checkpoint hash", prefix);
	else
		r = 0;
	buf_free(hash);
	return r;
}

/* The attenuation key signs only what an agent re-delegates; a human's
 * delegation must carry her own signature. */
static int
check_agent_issuer(struct json_object *claims)
{
	const char *iss;
	int r;

	if ((r = json_get_string(claims, "iss", &iss)) != 0)
		return th_fail(TH_ERR_DENIED, "claims: %s", th_errmsg(r));
	if (strncmp(iss, "agent:", 6) != 0)
		return th_fail(TH_ERR_DENIED, "the attenuation key signs only "
		    "delegations issued by an agent, not by \"%.64s\"", iss);
	return 0;
}

int
check_sign_payload(const struct config *cfg, enum purpose p,
    enum th_alg keyalg, const uint8_t *payload, size_t len, time_t now)
{
	struct jws *j = NULL;
	int64_t iat;
	int r;

	if (p == PURPOSE_ATTESTATION)
		return th_fail(TH_ERR_DENIED, "the attestation key signs only "
		    "through QUOTE");
	if (p == PURPOSE_AUDIT)
		return check_checkpoint(payload, len);
	if ((r = jws_parse_input((const char *)payload, len, &j)) != 0)
		return th_fail(TH_ERR_DENIED, "%s", th_errmsg(r));
	switch (p) {
	case PURPOSE_DELEGATION_ROOT:
		/* Through SIGN the root certifies humans only; its
		 * statement about the AK is made inside (AKCERT). */
		r = check_header(j, keyalg, TYP_HUMAN_CERT, 0);
		break;
	case PURPOSE_CAPABILITY:
		if ((r = check_header(j, keyalg, TYP_CAPABILITY, 0)) == 0 &&
		    (r = check_lifetime(j->claims, CAPABILITY_TTL_MAX,
		    &iat)) == 0)
			r = check_fresh(iat, now);
		break;
	case PURPOSE_ATTENUATION:
		if ((r = check_header(j, keyalg, TYP_DELEGATION, 0)) == 0)
			r = check_agent_issuer(j->claims);
		break;
	case PURPOSE_GITHUB_APP:
		if (keyalg != TH_ALG_RS256)
			r = th_fail(TH_ERR_DENIED, "github-app key is not RSA");
		else if ((r = check_header(j, TH_ALG_RS256, "JWT", 1)) == 0)
			r = check_github_jwt(cfg, j->claims, now);
		break;
	default:
		r = th_fail(TH_ERR_DENIED, "unknown purpose");
		break;
	}
	jws_free(j);
	return r;
}
