#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "b64url.h"
#include "check.h"
#include "err.h"
#include "json.h"
#include "proto.h"
#include "typ.h"

static int
decode_part(const uint8_t *p, size_t len, size_t maxlen, const char *what,
    struct json_object **out)
{
	struct buf *b = NULL;
	int r;

	*out = NULL;
	if ((b = buf_new()) == NULL)
		return TH_ERR_ALLOC;
	if ((r = b64url_decode(b, (const char *)p, len)) != 0) {
		r = th_fail(TH_ERR_DENIED, "%s: %s", what, th_errmsg(r));
		goto out;
	}
	if ((r = json_parse_strict((const char *)buf_ptr(b), buf_len(b),
	    maxlen, out)) != 0) {
		r = th_fail(TH_ERR_DENIED, "%s: %s", what, th_errmsg(r));
		goto out;
	}
	if (!json_object_is_type(*out, json_type_object)) {
		json_object_put(*out);
		*out = NULL;
		r = th_fail(TH_ERR_DENIED, "%s is not a JSON object", what);
	}
 out:
	buf_free(b);
	return r;
}

static int
check_header(struct json_object *hdr, enum th_alg want_alg,
    const char *want_typ, int typ_optional)
{
	const char *alg, *typ;
	int r;

	json_object_object_foreach(hdr, k, v) {
		(void)v;
		if (strcmp(k, "alg") != 0 && strcmp(k, "typ") != 0 &&
		    strcmp(k, "kid") != 0)
			return th_fail(TH_ERR_DENIED,
			    "header member \"%s\" not allowed", k);
	}
	if ((r = json_get_string(hdr, "alg", &alg)) != 0)
		return th_fail(TH_ERR_DENIED, "header: %s", th_errmsg(r));
	if (strcmp(alg, th_alg_name(want_alg)) != 0)
		return th_fail(TH_ERR_DENIED, "header alg %s, this key signs "
		    "only %s", alg, th_alg_name(want_alg));
	r = json_get_string(hdr, "typ", &typ);
	if (r == TH_ERR_NOT_FOUND && typ_optional)
		return 0;
	if (r != 0)
		return th_fail(TH_ERR_DENIED, "header: %s", th_errmsg(r));
	if (strcmp(typ, want_typ) != 0)
		return th_fail(TH_ERR_DENIED, "header typ \"%s\", this key signs "
		    "only \"%s\"", typ, want_typ);
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
	if (exp - iat > max)
		return th_fail(TH_ERR_DENIED, "lifetime %" PRId64 " s exceeds "
		    "%" PRId64 " s", exp - iat, max);
	*iat_out = iat;
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
	if (iat < (int64_t)now - CHECK_IAT_PAST ||
	    iat > (int64_t)now + CHECK_IAT_FUTURE)
		return th_fail(TH_ERR_DENIED, "iat is %" PRId64 " s from the "
		    "signer's clock (allowed -%d..+%d)", iat - (int64_t)now,
		    CHECK_IAT_PAST, CHECK_IAT_FUTURE);
	return 0;
}

int
check_sign_payload(const struct config *cfg, enum purpose p,
    enum th_alg keyalg, const uint8_t *payload, size_t len, time_t now)
{
	struct json_object *hdr = NULL, *claims = NULL;
	const uint8_t *dot;
	int64_t iat;
	int r;

	if (p == PURPOSE_ATTESTATION)
		return th_fail(TH_ERR_DENIED, "the attestation key signs only "
		    "through QUOTE");
	if ((dot = memchr(payload, '.', len)) == NULL ||
	    memchr(dot + 1, '.', len - (size_t)(dot + 1 - payload)) != NULL)
		return th_fail(TH_ERR_DENIED, "payload is not a JWS signing "
		    "input (header.claims)");
	if ((r = decode_part(payload, (size_t)(dot - payload),
	    CHECK_HEADER_MAX, "header", &hdr)) != 0 ||
	    (r = decode_part(dot + 1, len - (size_t)(dot + 1 - payload),
	    PROTO_PAYLOAD_MAX, "claims", &claims)) != 0)
		goto out;
	switch (p) {
	case PURPOSE_DELEGATION_ROOT:
		r = check_header(hdr, keyalg, TYP_HUMAN_CERT, 0);
		break;
	case PURPOSE_CAPABILITY:
		if ((r = check_header(hdr, keyalg, TYP_CAPABILITY, 0)) == 0)
			r = check_lifetime(claims, CAPABILITY_TTL_MAX, &iat);
		break;
	case PURPOSE_GITHUB_APP:
		if (keyalg != TH_ALG_RS256)
			r = th_fail(TH_ERR_DENIED, "github-app key is not RSA");
		else if ((r = check_header(hdr, TH_ALG_RS256, "JWT", 1)) == 0)
			r = check_github_jwt(cfg, claims, now);
		break;
	default:
		r = th_fail(TH_ERR_DENIED, "unknown purpose");
		break;
	}
 out:
	json_object_put(hdr);
	json_object_put(claims);
	return r;
}
