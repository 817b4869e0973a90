/* Domain separation: what each signer key may sign.  The signer never signs
 * an opaque blob; SIGN payloads are JWS signing inputs
 * (BASE64URL(header) "." BASE64URL(claims)) and are parsed and checked here
 * before any key is touched:
 *
 *   delegation-root  header alg = the key's, typ = threshold-human-cert+jwt
 *   capability       header alg = the key's, typ = threshold-capability+jwt,
 *                    claims iat and exp with 0 < exp - iat <= 60
 *   github-app       header alg = RS256, typ absent or "JWT"; claims iss =
 *                    the configured App id, 0 < exp - iat <= 600, and iat
 *                    within [now - 120, now + 60] so nobody can pre-sign
 *                    JWTs for later
 *   attenuation      header alg = the key's, typ = threshold-delegation+jwt,
 *                    claims iss = "agent:..." (re-delegations by agents)
 *   audit            exactly "threshold-audit-checkpoint:" and 43 base64url
 *                    characters (a checkpoint's qualifying data)
 *   attestation      never: it signs only through QUOTE
 *
 * Headers may hold only alg, typ and kid; header and claims must be strict
 * JSON objects without duplicate members. */
#ifndef TH_SIGNER_CHECK_H
#define TH_SIGNER_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "alg.h"
#include "config.h"

#define CHECK_HEADER_MAX	512
#define CHECK_IAT_PAST		120	/* a JWT's or capability's iat may lag
					 * now by this */
#define CHECK_IAT_FUTURE	60	/* ... and lead it by this */

/* 0 if key purpose p (of algorithm keyalg) may sign payload at time now;
 * otherwise TH_ERR_DENIED with a one-line reason. */
int	check_sign_payload(const struct config *cfg, enum purpose p,
	    enum th_alg keyalg, const uint8_t *payload, size_t len, time_t now);

#endif
