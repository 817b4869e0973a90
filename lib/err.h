/* Error codes shared by every Threshold module.
 *
 * Functions return 0 on success or one of the negative TH_ERR_* codes.  A
 * failing function may record a one-line detail with th_fail(); callers print
 * th_errmsg(code), which gives the detail when there is one and the generic
 * text otherwise.  The detail is thread-local, so concurrent threads do not
 * overwrite each other's messages. */
#ifndef TH_ERR_H
#define TH_ERR_H

#define TH_OK			0
#define TH_ERR_INTERNAL		-1	/* a bug: should not happen */
#define TH_ERR_ALLOC		-2	/* out of memory */
#define TH_ERR_INVALID		-3	/* malformed input */
#define TH_ERR_TOO_LONG		-4	/* a length exceeds its bound */
#define TH_ERR_TRUNCATED	-5	/* input ends early */
#define TH_ERR_IO		-6	/* read/write/socket failure */
#define TH_ERR_CRYPTO		-7	/* OpenSSL failure or bad signature */
#define TH_ERR_TPM		-8	/* the TPM refused a command */
#define TH_ERR_P11		-9	/* the PKCS#11 token refused a call */
#define TH_ERR_DENIED		-10	/* request understood and refused */
#define TH_ERR_NOT_FOUND	-11	/* no such key, purpose or object */
#define TH_ERR_UNAVAILABLE	-12	/* TPM, token or signer unreachable */
#define TH_ERR_CONFIG		-13	/* bad configuration */
#define TH_ERR_EXISTS		-14	/* the object already exists */
#define TH_ERR_PROTOCOL		-15	/* peer broke the wire protocol */
#define TH_ERR_MAX		-15

/* Generic text for a code; never NULL. */
const char *th_strerror(int code);

/* Records a printf-style detail for this thread and returns code, so that
 * "return th_fail(TH_ERR_INVALID, "bad %s", what);" reads naturally. */
int th_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last detail recorded by th_fail() for code, or th_strerror(code) if
 * the last detail belongs to another code. */
const char *th_errmsg(int code);

/* Forget any recorded detail. */
void th_errclear(void);

#endif
