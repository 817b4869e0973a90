#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"
#include "utf8.h"

#define TH_ERRMSG_MAX 512

static __thread char errmsg[TH_ERRMSG_MAX];
static __thread int errcode;

const char *
th_strerror(int code)
{
	switch (code) {
	case TH_OK:		return "success";
	case TH_ERR_INTERNAL:	return "internal error";
	case TH_ERR_ALLOC:	return "out of memory";
	case TH_ERR_INVALID:	return "malformed input";
	case TH_ERR_TOO_LONG:	return "length exceeds limit";
	case TH_ERR_TRUNCATED:	return "input truncated";
	case TH_ERR_IO:		return "I/O error";
	case TH_ERR_CRYPTO:	return "cryptographic operation failed";
	case TH_ERR_TPM:	return "TPM command failed";
	case TH_ERR_P11:	return "PKCS#11 call failed";
	case TH_ERR_DENIED:	return "request refused";
	case TH_ERR_NOT_FOUND:	return "not found";
	case TH_ERR_UNAVAILABLE: return "service unavailable";
	case TH_ERR_CONFIG:	return "configuration error";
	case TH_ERR_EXISTS:	return "already exists";
	case TH_ERR_PROTOCOL:	return "protocol error";
	}
	return "unknown error";
}

int
th_fail(int code, const char *fmt, ...)
{
	char tmp[TH_ERRMSG_MAX];
	va_list ap;

	/* Format into tmp first: callers may pass th_errmsg() as an argument
	 * to wrap the previous detail. */
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	/* One printable line of UTF-8 whatever it quotes (a cut "%.32s" can
	 * split a character): refusals are recorded in the audit log, whose
	 * canonical JSON cannot hold anything else, and printed as one line. */
	utf8_sanitize(tmp);
	memcpy(errmsg, tmp, sizeof(errmsg));
	errcode = code;
	return code;
}

const char *
th_errmsg(int code)
{
	if (code != 0 && code == errcode && errmsg[0] != '\0')
		return errmsg;
	return th_strerror(code);
}

void
th_errclear(void)
{
	errmsg[0] = '\0';
	errcode = 0;
}
