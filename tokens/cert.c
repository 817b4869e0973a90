#include <stdlib.h>
#include <string.h>

#include "cert.h"
#include "err.h"
#include "json.h"
#include "jwk.h"
#include "scope.h"
#include "typ.h"

void
cert_free(struct cert *c)
{
	if (c == NULL)
		return;
	jws_free(c->jws);
	EVP_PKEY_free(c->pub);
	free(c);
}

static int
get_times(struct json_object *claims, int64_t *iat, int64_t *nbf,
    int64_t *exp)
{
	int r;

	if ((r = json_get_int64(claims, "iat", iat)) != 0 ||
	    (r = json_get_int64(claims, "nbf", nbf)) != 0 ||
	    (r = json_get_int64(claims, "exp", exp)) != 0)
		return r;
	if (*nbf > *exp)
		return th_fail(TH_ERR_INVALID, "nbf is after exp");
	return 0;
}

int
cert_parse(const char *token, size_t len, struct cert **out)
{
	static const char *const members[] = { "iss", "sub", "name", "email",
	    "jwk", "jti", "iat", "nbf", "exp" };
	struct json_object *cl, *jwk;
	struct cert *c;
	const char *iss;
	int r;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return TH_ERR_ALLOC;
	if ((r = jws_parse(token, len, &c->jws)) != 0)
		goto out;
	if (strcmp(c->jws->typ, TYP_HUMAN_CERT) != 0) {
		r = th_fail(TH_ERR_INVALID, "typ \"%s\" is not a human "
		    "certificate", c->jws->typ);
		goto out;
	}
	cl = c->jws->claims;
	if ((r = json_only_members(cl, members, 9)) != 0 ||
	    (r = json_get_string(cl, "iss", &iss)) != 0 ||
	    (r = json_get_string(cl, "sub", &c->sub)) != 0 ||
	    (r = json_get_string_len(cl, "name", CERT_DISPLAY_MAX,
	    &c->name)) != 0 ||
	    (r = json_get_string_len(cl, "email", CERT_EMAIL_MAX,
	    &c->email)) != 0 ||
	    (r = json_get_string_len(cl, "jti", JWS_JTI_LEN, &c->jti)) != 0 ||
	    (r = get_times(cl, &c->iat, &c->nbf, &c->exp)) != 0)
		goto out;
	if (strcmp(iss, CERT_ISS) != 0 || !name_valid(c->sub, "human") ||
	    strlen(c->email) < 3 || strchr(c->email, '@') == NULL ||
	    !jws_jti_valid(c->jti)) {
		r = th_fail(TH_ERR_INVALID, "bad iss, sub, email or jti");
		goto out;
	}
	if (!json_object_object_get_ex(cl, "jwk", &jwk)) {
		r = th_fail(TH_ERR_INVALID, "missing \"jwk\"");
		goto out;
	}
	if ((r = jwk_to_pkey(jwk, &c->pub)) != 0)
		goto out;
	*out = c;
	c = NULL;
 out:
	if (r != 0)
		r = th_fail(r, "human certificate: %s", th_errmsg(r));
	cert_free(c);
	return r;
}

int
cert_claims(const char *sub, const char *name, const char *email,
    EVP_PKEY *pub, int64_t iat, int64_t nbf, int64_t exp,
    struct json_object **out)
{
	struct json_object *o = NULL, *jwk = NULL;
	char jti[JWS_JTI_LEN + 1];
	int r;

	*out = NULL;
	if (!name_valid(sub, "human"))
		return th_fail(TH_ERR_INVALID, "\"%s\" is not a valid human "
		    "name ([a-z0-9][a-z0-9._-]*, at most 63)", sub);
	if (strlen(name) == 0 || strlen(name) > CERT_DISPLAY_MAX ||
	    strlen(email) > CERT_EMAIL_MAX || strlen(email) < 3 ||
	    strchr(email, '@') == NULL)
		return th_fail(TH_ERR_INVALID, "a display name (1-128 bytes) "
		    "and an email address are required");
	if (nbf > exp)
		return th_fail(TH_ERR_INVALID, "nbf after exp");
	if ((r = jwk_from_pkey(pub, &jwk)) != 0 || (r = jws_new_jti(jti)) != 0)
		goto out;
	if ((o = json_object_new_object()) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	json_object_object_add(o, "iss", json_object_new_string(CERT_ISS));
	json_object_object_add(o, "sub", json_object_new_string(sub));
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "email", json_object_new_string(email));
	json_object_object_add(o, "jwk", jwk);
	jwk = NULL;
	json_object_object_add(o, "jti", json_object_new_string(jti));
	json_object_object_add(o, "iat", json_object_new_int64(iat));
	json_object_object_add(o, "nbf", json_object_new_int64(nbf));
	json_object_object_add(o, "exp", json_object_new_int64(exp));
	*out = o;
	o = NULL;
 out:
	json_object_put(jwk);
	json_object_put(o);
	return r;
}
