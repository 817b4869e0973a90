/* JWS "typ" header values of Threshold's tokens (docs/tokens.md).  The typ is
 * inside the signed bytes, and the signer signs with each key only the one
 * typ that key is for, so no token can be passed off as another kind. */
#ifndef TH_TYP_H
#define TH_TYP_H

#define TYP_HUMAN_CERT	"threshold-human-cert+jwt"	/* delegation-root */
#define TYP_DELEGATION	"threshold-delegation+jwt"	/* a human's key */
#define TYP_CAPABILITY	"threshold-capability+jwt"	/* capability */
#define TYP_AK_CERT	"threshold-ak-cert+jwt"	/* delegation-root: this AK
						 * was activated with this EK */
#define TYP_KEYS_CERT	"threshold-keys+jwt"	/* delegation-root: these are
						 * this signer's keys */

#define CAPABILITY_TTL_MAX	60	/* seconds */
#define GITHUB_JWT_TTL_MAX	600	/* seconds, GitHub's own limit */

#endif
