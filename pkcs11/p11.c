/* PKCS#11 backend: libp11 for token lookup, login and key enumeration; raw
 * PKCS#11 (the module's own function list) for what libp11 0.4.12 lacks
 * (key generation, import with our attributes, attribute checks) and for
 * the signing hot path (C_SignInit + C_Sign on a session kept per key).
 * URIs are parsed by p11-kit.  See p11.h for contracts. */
#include <sys/stat.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <libp11.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "err.h"
#include "p11.h"
#include "sha.h"

#define TMPL_MAX	24	/* attributes in one template */
#define FIND_MAX	16	/* objects one lookup may return */
#define RSA_BITS	2048
#define RSA_BYTES	(RSA_BITS / 8)
#define EC_POINT_LEN	65	/* uncompressed P-256 point */
#define EC_SCALAR_LEN	32
#define ES256_SIG_LEN	64

/* DER OBJECT IDENTIFIER prime256v1, the CKA_EC_PARAMS of a P-256 key. */
static const uint8_t oid_p256[] = {
	0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
};
/* DER DigestInfo prefix for SHA-256 (RFC 8017 9.2 note 1). */
static const uint8_t sha256_prefix[] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65,
	0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20
};
static const uint8_t rsa_e65537[] = { 0x01, 0x00, 0x01 };
static const CK_BBOOL ck_true = CK_TRUE;
static const CK_BBOOL ck_false = CK_FALSE;

struct p11_ctx {
	PKCS11_CTX		*lctx;
	PKCS11_SLOT		*slots;
	unsigned int		 nslots;
	void			*dl;		/* our reference to the module */
	CK_FUNCTION_LIST_PTR	 f;
	char			*pin_file;	/* a path, never the PIN */
};

struct p11_key {
	struct p11_ctx		*ctx;
	CK_SESSION_HANDLE	 session;	/* ours alone, read-only */
	CK_OBJECT_HANDLE	 handle;
	enum th_alg		 alg;
	size_t			 siglen;
	EVP_PKEY		*pub;
};

/* A parsed URI and the token it names. */
struct target {
	P11KitUri		*uri;
	CK_ATTRIBUTE		*label;		/* into uri; NULL if absent */
	CK_ATTRIBUTE		*id;		/* into uri; NULL if absent */
	PKCS11_SLOT		*slot;		/* valid until the next refresh */
	CK_SLOT_ID		 slotid;
};

struct tmpl {
	CK_ATTRIBUTE		 a[TMPL_MAX];
	CK_ULONG		 n;
};

static const char *
ckr_name(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:				return "CKR_OK";
	case CKR_CANCEL:			return "CKR_CANCEL";
	case CKR_HOST_MEMORY:			return "CKR_HOST_MEMORY";
	case CKR_SLOT_ID_INVALID:		return "CKR_SLOT_ID_INVALID";
	case CKR_GENERAL_ERROR:			return "CKR_GENERAL_ERROR";
	case CKR_FUNCTION_FAILED:		return "CKR_FUNCTION_FAILED";
	case CKR_ARGUMENTS_BAD:			return "CKR_ARGUMENTS_BAD";
	case CKR_ATTRIBUTE_READ_ONLY:		return "CKR_ATTRIBUTE_READ_ONLY";
	case CKR_ATTRIBUTE_SENSITIVE:		return "CKR_ATTRIBUTE_SENSITIVE";
	case CKR_ATTRIBUTE_TYPE_INVALID:	return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_ATTRIBUTE_VALUE_INVALID:	return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_DATA_INVALID:			return "CKR_DATA_INVALID";
	case CKR_DATA_LEN_RANGE:		return "CKR_DATA_LEN_RANGE";
	case CKR_DEVICE_ERROR:			return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_MEMORY:			return "CKR_DEVICE_MEMORY";
	case CKR_DEVICE_REMOVED:		return "CKR_DEVICE_REMOVED";
	case CKR_FUNCTION_NOT_SUPPORTED:	return "CKR_FUNCTION_NOT_SUPPORTED";
	case CKR_KEY_HANDLE_INVALID:		return "CKR_KEY_HANDLE_INVALID";
	case CKR_KEY_SIZE_RANGE:		return "CKR_KEY_SIZE_RANGE";
	case CKR_KEY_TYPE_INCONSISTENT:		return "CKR_KEY_TYPE_INCONSISTENT";
	case CKR_KEY_FUNCTION_NOT_PERMITTED:	return "CKR_KEY_FUNCTION_NOT_PERMITTED";
	case CKR_KEY_NOT_WRAPPABLE:		return "CKR_KEY_NOT_WRAPPABLE";
	case CKR_KEY_UNEXTRACTABLE:		return "CKR_KEY_UNEXTRACTABLE";
	case CKR_MECHANISM_INVALID:		return "CKR_MECHANISM_INVALID";
	case CKR_MECHANISM_PARAM_INVALID:	return "CKR_MECHANISM_PARAM_INVALID";
	case CKR_OBJECT_HANDLE_INVALID:		return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_OPERATION_ACTIVE:		return "CKR_OPERATION_ACTIVE";
	case CKR_OPERATION_NOT_INITIALIZED:	return "CKR_OPERATION_NOT_INITIALIZED";
	case CKR_PIN_INCORRECT:			return "CKR_PIN_INCORRECT";
	case CKR_PIN_INVALID:			return "CKR_PIN_INVALID";
	case CKR_PIN_LEN_RANGE:			return "CKR_PIN_LEN_RANGE";
	case CKR_PIN_EXPIRED:			return "CKR_PIN_EXPIRED";
	case CKR_PIN_LOCKED:			return "CKR_PIN_LOCKED";
	case CKR_SESSION_CLOSED:		return "CKR_SESSION_CLOSED";
	case CKR_SESSION_COUNT:			return "CKR_SESSION_COUNT";
	case CKR_SESSION_HANDLE_INVALID:	return "CKR_SESSION_HANDLE_INVALID";
	case CKR_SESSION_READ_ONLY:		return "CKR_SESSION_READ_ONLY";
	case CKR_TEMPLATE_INCOMPLETE:		return "CKR_TEMPLATE_INCOMPLETE";
	case CKR_TEMPLATE_INCONSISTENT:		return "CKR_TEMPLATE_INCONSISTENT";
	case CKR_TOKEN_NOT_PRESENT:		return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED:		return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_TOKEN_WRITE_PROTECTED:		return "CKR_TOKEN_WRITE_PROTECTED";
	case CKR_USER_ALREADY_LOGGED_IN:	return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_USER_NOT_LOGGED_IN:		return "CKR_USER_NOT_LOGGED_IN";
	case CKR_USER_PIN_NOT_INITIALIZED:	return "CKR_USER_PIN_NOT_INITIALIZED";
	case CKR_USER_TYPE_INVALID:		return "CKR_USER_TYPE_INVALID";
	case CKR_WRAPPING_KEY_HANDLE_INVALID:	return "CKR_WRAPPING_KEY_HANDLE_INVALID";
	case CKR_BUFFER_TOO_SMALL:		return "CKR_BUFFER_TOO_SMALL";
	case CKR_CRYPTOKI_NOT_INITIALIZED:	return "CKR_CRYPTOKI_NOT_INITIALIZED";
	case CKR_CRYPTOKI_ALREADY_INITIALIZED:	return "CKR_CRYPTOKI_ALREADY_INITIALIZED";
	}
	return "CKR_?";
}

static int
ckr_code(CK_RV rv)
{
	switch (rv) {
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
	case CKR_PIN_EXPIRED:
	case CKR_PIN_LOCKED:
	case CKR_USER_PIN_NOT_INITIALIZED:
		return TH_ERR_DENIED;
	case CKR_DEVICE_ERROR:
	case CKR_DEVICE_REMOVED:
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_SESSION_CLOSED:
	case CKR_SESSION_HANDLE_INVALID:
	/* A key handle the token no longer knows: it went away and back
	 * (its objects were loaded anew), so the key is to be found again. */
	case CKR_OBJECT_HANDLE_INVALID:
	case CKR_KEY_HANDLE_INVALID:
	case CKR_USER_NOT_LOGGED_IN:
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return TH_ERR_UNAVAILABLE;
	case CKR_HOST_MEMORY:
	case CKR_DEVICE_MEMORY:
		return TH_ERR_ALLOC;
	}
	return TH_ERR_P11;
}

static int
ckr_fail(const char *call, CK_RV rv)
{
	return th_fail(ckr_code(rv), "%s: %s (0x%lx)", call, ckr_name(rv),
	    (unsigned long)rv);
}

/* A libp11 call failed: recover the CKR code it queued, if any. */
static int
lp_fail(int code, const char *call)
{
	unsigned long e;
	CK_RV rv = CKR_OK;

	while ((e = ERR_get_error()) != 0)
		if ((int)ERR_GET_LIB(e) == ERR_get_CKR_code())
			rv = ERR_GET_REASON(e);
	if (rv != CKR_OK)
		return ckr_fail(call, rv);
	return th_fail(code, "%s failed", call);
}

static void
tmpl_add(struct tmpl *t, CK_ATTRIBUTE_TYPE type, const void *p, size_t len)
{
	if (t->n >= TMPL_MAX)
		abort();	/* a template here outgrew TMPL_MAX: a bug */
	t->a[t->n].type = type;
	t->a[t->n].pValue = (void *)p;
	t->a[t->n].ulValueLen = len;
	t->n++;
}

static void
tmpl_bool(struct tmpl *t, CK_ATTRIBUTE_TYPE type, int v)
{
	tmpl_add(t, type, v ? &ck_true : &ck_false, sizeof(CK_BBOOL));
}

/* ---- PIN ---- */

/* Reads a PIN file: at most P11_PIN_MAX bytes, one trailing newline (LF or
 * CRLF) stripped, no NUL or newline inside.  pin must hold P11_PIN_MAX + 1
 * bytes; it is wiped on failure. */
static int
pin_read(const char *path, char *pin, struct stat *stp)
{
	char buf[P11_PIN_MAX + 3];
	size_t len = 0;
	ssize_t n;
	struct stat st;
	int fd = -1, r = TH_ERR_INTERNAL;

	/* O_NONBLOCK: a FIFO must not hang us before the S_ISREG check. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
	    O_NOFOLLOW)) == -1) {
		r = th_fail(TH_ERR_CONFIG, "PIN file %s: %s", path,
		    errno == ELOOP ? "a symbolic link (give the file itself)" :
		    strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		r = th_fail(TH_ERR_CONFIG, "PIN file %s: not a regular file",
		    path);
		goto out;
	}
	/* Another user who could write it could lock the token with wrong
	 * PINs; one who could read it has the PIN. */
	if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		r = th_fail(TH_ERR_CONFIG, "PIN file %s: must be owned by uid "
		    "%u and mode 0600 or stricter (chmod 600)", path,
		    (unsigned)geteuid());
		goto out;
	}
	*stp = st;
	while (len < sizeof(buf)) {
		n = read(fd, buf + len, sizeof(buf) - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			r = th_fail(TH_ERR_IO, "PIN file %s: %s", path,
			    strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > P11_PIN_MAX) {
		r = th_fail(TH_ERR_TOO_LONG, "PIN file %s: longer than %d "
		    "bytes", path, P11_PIN_MAX);
		goto out;
	}
	if (len == 0 || memchr(buf, '\0', len) != NULL ||
	    memchr(buf, '\n', len) != NULL) {
		r = th_fail(TH_ERR_CONFIG, "PIN file %s: empty or not one line",
		    path);
		goto out;
	}
	memcpy(pin, buf, len);
	pin[len] = '\0';
	r = 0;
 out:
	if (r != 0)
		OPENSSL_cleanse(pin, P11_PIN_MAX + 1);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd != -1)
		close(fd);
	return r;
}

/* pin-source=file:/abs, file:///abs or /abs; nothing else (no programs,
 * no relative paths). */
static int
pin_source_path(const char *src, const char **path)
{
	if (strncmp(src, "file://", 7) == 0)
		src += 7;
	else if (strncmp(src, "file:", 5) == 0)
		src += 5;
	if (src[0] != '/')
		return th_fail(TH_ERR_INVALID, "pin-source must be file:/path");
	*path = src;
	return 0;
}

/* ---- URI and token ---- */

static void
target_close(struct target *t)
{
	if (t->uri != NULL)
		p11_kit_uri_free(t->uri);
	memset(t, 0, sizeof(*t));
}


/* RFC 7512 section 2.3: an attribute appears at most once.  p11-kit takes
 * the last of two, so "object=a;object=b" would select b where a reader of
 * the configuration sees a. */
static int
uri_unique(const char *s)
{
	const char *p, *end, *eq, *names[32];
	size_t lens[32], n = 0, i, len;

	if (strncmp(s, "pkcs11:", 7) != 0)
		return 0;		/* p11-kit says what is wrong */
	for (p = s + 7; *p != '\0'; p = end + (*end != '\0')) {
		end = p + strcspn(p, ";?&");
		if ((eq = memchr(p, '=', (size_t)(end - p))) == NULL)
			continue;
		len = (size_t)(eq - p);
		for (i = 0; i < n; i++)
			if (lens[i] == len && memcmp(names[i], p, len) == 0)
				return th_fail(TH_ERR_INVALID, "PKCS#11 URI names "
				    "\"%.*s\" twice", (int)len, p);
		if (n == sizeof(names) / sizeof(names[0]))
			return th_fail(TH_ERR_INVALID, "PKCS#11 URI has too "
			    "many attributes");
		names[n] = p;
		lens[n++] = len;
	}
	return 0;
}

static int
uri_parse(const char *s, struct target *t)
{
	CK_ATTRIBUTE *cls;
	CK_OBJECT_CLASS c;
	int pr, r = TH_ERR_INTERNAL;

	memset(t, 0, sizeof(*t));
	if (s == NULL)
		return th_fail(TH_ERR_INVALID, "no PKCS#11 URI");
	if (strnlen(s, P11_URI_MAX + 1) > P11_URI_MAX)
		return th_fail(TH_ERR_TOO_LONG, "PKCS#11 URI longer than %d",
		    P11_URI_MAX);
	if ((r = uri_unique(s)) != 0)
		return r;
	if ((t->uri = p11_kit_uri_new()) == NULL)
		return th_fail(TH_ERR_ALLOC, "p11_kit_uri_new");
	if ((pr = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, t->uri)) !=
	    P11_KIT_URI_OK) {
		r = th_fail(TH_ERR_INVALID, "PKCS#11 URI: %s",
		    p11_kit_uri_message(pr));
		goto out;
	}
	/* XXX p11-kit keeps its own unwiped copy of a pin-value until
	 * p11_kit_uri_free; we only refuse it. */
	if (p11_kit_uri_get_pin_value(t->uri) != NULL) {
		r = th_fail(TH_ERR_DENIED, "PKCS#11 URI carries pin-value; "
		    "give the PIN in a file (pin-source)");
		goto out;
	}
	if (p11_kit_uri_get_module_name(t->uri) != NULL ||
	    p11_kit_uri_get_module_path(t->uri) != NULL) {
		r = th_fail(TH_ERR_INVALID, "PKCS#11 URI names a module; the "
		    "module comes from the configuration");
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(t->uri)) {
		r = th_fail(TH_ERR_INVALID, "PKCS#11 URI has unknown "
		    "attributes");
		goto out;
	}
	if ((cls = p11_kit_uri_get_attribute(t->uri, CKA_CLASS)) != NULL) {
		if (cls->ulValueLen != sizeof(c)) {
			r = th_fail(TH_ERR_INVALID, "PKCS#11 URI: bad type");
			goto out;
		}
		memcpy(&c, cls->pValue, sizeof(c));
		if (c != CKO_PRIVATE_KEY) {
			r = th_fail(TH_ERR_INVALID, "PKCS#11 URI: type must be "
			    "private");
			goto out;
		}
	}
	t->label = p11_kit_uri_get_attribute(t->uri, CKA_LABEL);
	t->id = p11_kit_uri_get_attribute(t->uri, CKA_ID);
	if (t->label != NULL && t->label->ulValueLen == 0)
		t->label = NULL;
	if (t->id != NULL && t->id->ulValueLen == 0)
		t->id = NULL;
	if (t->id != NULL && t->id->ulValueLen > P11_ID_MAX) {
		r = th_fail(TH_ERR_TOO_LONG, "PKCS#11 URI: id longer than %d",
		    P11_ID_MAX);
		goto out;
	}
	if (t->label == NULL && t->id == NULL) {
		r = th_fail(TH_ERR_INVALID, "PKCS#11 URI names no object "
		    "(object= or id=)");
		goto out;
	}
	r = 0;
 out:
	if (r != 0)
		target_close(t);
	return r;
}

/* The one initialised token matching the URI's token, slot and module
 * attributes. */
static int
slot_find(struct p11_ctx *ctx, struct target *t)
{
	CK_INFO minfo;
	CK_SLOT_INFO sinfo;
	CK_TOKEN_INFO tinfo;
	CK_SLOT_ID id, want;
	CK_RV rv;
	unsigned int i, found = 0;

	if ((rv = ctx->f->C_GetInfo(&minfo)) != CKR_OK)
		return ckr_fail("C_GetInfo", rv);
	if (!p11_kit_uri_match_module_info(t->uri, &minfo))
		return th_fail(TH_ERR_NOT_FOUND, "PKCS#11 URI does not match "
		    "the module");
	want = p11_kit_uri_get_slot_id(t->uri);
	for (i = 0; i < ctx->nslots; i++) {
		PKCS11_SLOT *s = &ctx->slots[i];

		if (s->token == NULL || !s->token->initialized)
			continue;
		id = PKCS11_get_slotid_from_slot(s);
		if (want != (CK_SLOT_ID)-1 && id != want)
			continue;
		if (ctx->f->C_GetSlotInfo(id, &sinfo) != CKR_OK ||
		    ctx->f->C_GetTokenInfo(id, &tinfo) != CKR_OK)
			continue;
		if (!p11_kit_uri_match_slot_info(t->uri, &sinfo) ||
		    !p11_kit_uri_match_token_info(t->uri, &tinfo))
			continue;
		if (found++ == 0) {
			t->slot = s;
			t->slotid = id;
		}
	}
	/* Unavailable, not not-found: a token unplugged is looked for again
	 * from the module's initialisation (the slot list is read there). */
	if (found == 0)
		return th_fail(TH_ERR_UNAVAILABLE, "no initialised token "
		    "matches the PKCS#11 URI");
	if (found > 1)
		return th_fail(TH_ERR_INVALID, "%u tokens match the PKCS#11 "
		    "URI; name one with token=", found);
	return 0;
}


/* PIN files the token refused, as they were then (a context is made
 * afresh after every failure, so this is the process's): each is not
 * tried again until it changes, since a token locks after a few wrong
 * PINs and any allowed peer can make the signer log in.  A file is known
 * by its device and inode, whatever its path's length or spelling.  op 0
 * asks, 1 records a refusal, -1 forgets one. */
#define PIN_REFUSED_MAX	8
static struct {
	int		 used;
	dev_t		 dev;
	ino_t		 ino;
	off_t		 size;
	struct timespec	 mtime;
}		 refused[PIN_REFUSED_MAX];
static size_t	 refused_next;
static pthread_mutex_t refused_mu = PTHREAD_MUTEX_INITIALIZER;

static int
pin_refused(const struct stat *st, int op)
{
	size_t i;
	int found = 0;

	pthread_mutex_lock(&refused_mu);
	for (i = 0; i < PIN_REFUSED_MAX; i++)
		if (refused[i].used && refused[i].dev == st->st_dev &&
		    refused[i].ino == st->st_ino)
			break;
	if (op == 0)
		found = i < PIN_REFUSED_MAX &&
		    refused[i].size == st->st_size &&
		    refused[i].mtime.tv_sec == st->st_mtim.tv_sec &&
		    refused[i].mtime.tv_nsec == st->st_mtim.tv_nsec;
	else if (op < 0 && i < PIN_REFUSED_MAX)
		refused[i].used = 0;
	else if (op > 0) {
		if (i == PIN_REFUSED_MAX) {
			i = refused_next;
			refused_next = (refused_next + 1) % PIN_REFUSED_MAX;
		}
		refused[i].used = 1;
		refused[i].dev = st->st_dev;
		refused[i].ino = st->st_ino;
		refused[i].size = st->st_size;
		refused[i].mtime = st->st_mtim;
	}
	pthread_mutex_unlock(&refused_mu);
	return found;
}

static int
login(struct p11_ctx *ctx, struct target *t)
{
	char pin[P11_PIN_MAX + 1];
	const char *path = NULL, *src;
	struct stat st;
	int r, in = 0;

	if (!t->slot->token->loginRequired)
		return 0;
	if (PKCS11_is_logged_in(t->slot, 0, &in) == 0 && in)
		return 0;
	if ((src = p11_kit_uri_get_pin_source(t->uri)) != NULL) {
		if ((r = pin_source_path(src, &path)) != 0)
			return r;
	} else if ((path = ctx->pin_file) == NULL)
		return th_fail(TH_ERR_CONFIG, "no PIN file for the token (set "
		    "one or add pin-source to the URI)");
	if (t->slot->token->userPinLocked)
		return th_fail(TH_ERR_DENIED, "the token's user PIN is locked "
		    "(unlock it with the SO PIN)");
	if ((r = pin_read(path, pin, &st)) != 0)
		return r;
	if (pin_refused(&st, 0)) {
		OPENSSL_cleanse(pin, sizeof(pin));
		return th_fail(TH_ERR_DENIED, "PIN not tried again: the token "
		    "refused it and its file has not changed since (a token "
		    "locks after a few wrong PINs); correct %s", path);
	}
	/* libp11 keeps a copy for re-login after fork(), wiped when the
	 * slots are released (p11_close). */
	if (PKCS11_login(t->slot, 0, pin) != 0) {
		r = lp_fail(TH_ERR_DENIED, "PKCS11_login");
		if (r == TH_ERR_DENIED)
			(void)pin_refused(&st, 1);
	} else
		(void)pin_refused(&st, -1);
	OPENSSL_cleanse(pin, sizeof(pin));
	return r;
}

/* Parses the URI, finds its token and logs in. */
static int
target_open(struct p11_ctx *ctx, const char *s, struct target *t)
{
	int r;

	if (ctx == NULL)
		return th_fail(TH_ERR_INVALID, "no PKCS#11 context");
	if ((r = uri_parse(s, t)) != 0)
		return r;
	if ((r = slot_find(ctx, t)) != 0 || (r = login(ctx, t)) != 0)
		target_close(t);
	return r;
}

/* ---- raw PKCS#11 helpers ---- */

static int
session_open(struct p11_ctx *ctx, CK_SLOT_ID slot, int rw,
    CK_SESSION_HANDLE *s)
{
	CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
	CK_RV rv;

	if ((rv = ctx->f->C_OpenSession(slot, fl, NULL, NULL, s)) != CKR_OK)
		return ckr_fail("C_OpenSession", rv);
	return 0;
}

static void
session_close(struct p11_ctx *ctx, CK_SESSION_HANDLE s)
{
	if (s != CK_INVALID_HANDLE)
		(void)ctx->f->C_CloseSession(s);
}

/* Objects of class cls matching label and id (either may be NULL). */
static int
find(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls,
    const CK_ATTRIBUTE *label, const CK_ATTRIBUTE *id,
    CK_OBJECT_HANDLE h[FIND_MAX], CK_ULONG *n)
{
	struct tmpl t = { .n = 0 };
	CK_RV rv;

	*n = 0;
	tmpl_add(&t, CKA_CLASS, &cls, sizeof(cls));
	if (label != NULL)
		tmpl_add(&t, CKA_LABEL, label->pValue, label->ulValueLen);
	if (id != NULL)
		tmpl_add(&t, CKA_ID, id->pValue, id->ulValueLen);
	if ((rv = ctx->f->C_FindObjectsInit(s, t.a, t.n)) != CKR_OK)
		return ckr_fail("C_FindObjectsInit", rv);
	rv = ctx->f->C_FindObjects(s, h, FIND_MAX, n);
	(void)ctx->f->C_FindObjectsFinal(s);
	if (rv != CKR_OK)
		return ckr_fail("C_FindObjects", rv);
	return 0;
}

/* A variable-length attribute, allocated (NUL-terminated for convenience);
 * caller frees with OPENSSL_free. */
static int
attr_get(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    CK_ATTRIBUTE_TYPE type, uint8_t **p, size_t *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	*p = NULL;
	*len = 0;
	if ((rv = ctx->f->C_GetAttributeValue(s, h, &a, 1)) != CKR_OK)
		return ckr_fail("C_GetAttributeValue", rv);
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 65536)
		return th_fail(TH_ERR_P11, "attribute 0x%lx unavailable",
		    (unsigned long)type);
	if ((a.pValue = OPENSSL_zalloc(a.ulValueLen + 1)) == NULL)
		return th_fail(TH_ERR_ALLOC, "attribute");
	if ((rv = ctx->f->C_GetAttributeValue(s, h, &a, 1)) != CKR_OK) {
		OPENSSL_free(a.pValue);
		return ckr_fail("C_GetAttributeValue", rv);
	}
	*p = a.pValue;
	*len = a.ulValueLen;
	return 0;
}

static int
attr_fixed(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    CK_ATTRIBUTE_TYPE type, void *p, size_t len)
{
	CK_ATTRIBUTE a = { type, p, len };
	CK_RV rv;

	if ((rv = ctx->f->C_GetAttributeValue(s, h, &a, 1)) != CKR_OK)
		return ckr_fail("C_GetAttributeValue", rv);
	if (a.ulValueLen != len)
		return th_fail(TH_ERR_P11, "attribute 0x%lx has length %lu",
		    (unsigned long)type, (unsigned long)a.ulValueLen);
	return 0;
}

/* The algorithm of a key object: EC P-256 -> ES256, RSA-2048 -> RS256;
 * anything else is refused. */
static int
key_alg(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    enum th_alg *alg)
{
	CK_KEY_TYPE kt;
	uint8_t *v = NULL;
	size_t len, i;
	int r;

	if ((r = attr_fixed(ctx, s, h, CKA_KEY_TYPE, &kt, sizeof(kt))) != 0)
		return r;
	if (kt == CKK_EC) {
		if ((r = attr_get(ctx, s, h, CKA_EC_PARAMS, &v, &len)) != 0)
			return r;
		if (len != sizeof(oid_p256) || memcmp(v, oid_p256, len) != 0)
			r = th_fail(TH_ERR_INVALID, "EC key is not on P-256");
		*alg = TH_ALG_ES256;
	} else if (kt == CKK_RSA) {
		if ((r = attr_get(ctx, s, h, CKA_MODULUS, &v, &len)) != 0)
			return r;
		for (i = 0; i < len && v[i] == 0; i++)
			;
		if (len - i != RSA_BYTES || (v[i] & 0x80) == 0)
			r = th_fail(TH_ERR_INVALID, "RSA key is not 2048-bit");
		*alg = TH_ALG_RS256;
	} else
		r = th_fail(TH_ERR_INVALID, "key type 0x%lx is neither EC nor "
		    "RSA", (unsigned long)kt);
	OPENSSL_free(v);
	return r;
}

static int
pub_ec(const uint8_t *point, size_t len, EVP_PKEY **out)
{
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *pc = NULL;
	int r = TH_ERR_INTERNAL;

	if (len != EC_POINT_LEN || point[0] != 0x04)
		return th_fail(TH_ERR_INVALID, "EC point is not an "
		    "uncompressed P-256 point");
	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
	params[1] = OSSL_PARAM_construct_octet_string(
	    OSSL_PKEY_PARAM_PUB_KEY, (void *)point, len);
	params[2] = OSSL_PARAM_construct_end();
	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "EC public key from token rejected");
		goto out;
	}
	r = 0;
 out:
	EVP_PKEY_CTX_free(pc);
	ERR_clear_error();
	return r;
}

static int
pub_rsa(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen,
    EVP_PKEY **out)
{
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pc = NULL;
	BIGNUM *bn = NULL, *be = NULL;
	int r = TH_ERR_INTERNAL;

	if ((bn = BN_bin2bn(n, (int)nlen, NULL)) == NULL ||
	    (be = BN_bin2bn(e, (int)elen, NULL)) == NULL ||
	    (bld = OSSL_PARAM_BLD_new()) == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "RSA public key parameters");
		goto out;
	}
	if ((pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) != 1 ||
	    EVP_PKEY_fromdata(pc, out, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "RSA public key from token rejected");
		goto out;
	}
	if (EVP_PKEY_get_bits(*out) != RSA_BITS) {
		EVP_PKEY_free(*out);
		*out = NULL;
		r = th_fail(TH_ERR_INVALID, "RSA public key is not 2048-bit");
		goto out;
	}
	r = 0;
 out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pc);
	BN_free(bn);
	BN_free(be);
	ERR_clear_error();
	return r;
}

/* A plain OpenSSL public key from a public key object (or, for RSA, from
 * the private key object's public components). */
static int
pub_from_object(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    enum th_alg alg, EVP_PKEY **out)
{
	uint8_t *a = NULL, *b = NULL;
	size_t alen, blen;
	int r;

	*out = NULL;
	if (alg == TH_ALG_ES256) {
		if ((r = attr_get(ctx, s, h, CKA_EC_POINT, &a, &alen)) != 0)
			goto out;
		/* DER OCTET STRING (the standard) or a bare point. */
		if (alen == EC_POINT_LEN + 2 && a[0] == 0x04 &&
		    a[1] == EC_POINT_LEN)
			r = pub_ec(a + 2, alen - 2, out);
		else
			r = pub_ec(a, alen, out);
	} else {
		if ((r = attr_get(ctx, s, h, CKA_MODULUS, &a, &alen)) != 0 ||
		    (r = attr_get(ctx, s, h, CKA_PUBLIC_EXPONENT, &b,
		    &blen)) != 0)
			goto out;
		r = pub_rsa(a, alen, b, blen, out);
	}
 out:
	OPENSSL_free(a);
	OPENSSL_free(b);
	return r;
}

/* The public key paired with private key object h: the public key object
 * with the same CKA_ID (and label, when the id is empty). */
static int
pub_for_private(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    enum th_alg alg, EVP_PKEY **out)
{
	CK_OBJECT_HANDLE hs[FIND_MAX];
	CK_ATTRIBUTE id = { CKA_ID, NULL, 0 }, label = { CKA_LABEL, NULL, 0 };
	uint8_t *idv = NULL, *lv = NULL;
	size_t idlen = 0, llen = 0;
	CK_ULONG n;
	int r;

	if ((r = attr_get(ctx, s, h, CKA_ID, &idv, &idlen)) != 0)
		goto out;
	id.pValue = idv;
	id.ulValueLen = idlen;
	if (idlen == 0) {
		if ((r = attr_get(ctx, s, h, CKA_LABEL, &lv, &llen)) != 0)
			goto out;
		label.pValue = lv;
		label.ulValueLen = llen;
	}
	if ((r = find(ctx, s, CKO_PUBLIC_KEY, idlen == 0 ? &label : NULL, &id,
	    hs, &n)) != 0)
		goto out;
	if (n == 1)
		r = pub_from_object(ctx, s, hs[0], alg, out);
	else if (n == 0 && alg == TH_ALG_RS256)
		r = pub_from_object(ctx, s, h, alg, out);
	else if (n == 0)
		r = th_fail(TH_ERR_NOT_FOUND, "no public key object for the "
		    "EC private key");
	else
		r = th_fail(TH_ERR_INVALID, "%lu public key objects share the "
		    "key's id", (unsigned long)n);
 out:
	OPENSSL_free(idv);
	OPENSSL_free(lv);
	return r;
}

/* The private key the target names.  libp11's key list must show it with
 * the same type; the raw handle is then resolved in session s, and exactly
 * one object must match there.
 *
 * libp11 0.4.12 caches a token's keys per slot: each enumeration adds new
 * objects but never drops destroyed ones, and PKCS11_update_slots (the way
 * to flush it) crashes, while PKCS11_remove_key needs a read-write libp11
 * session, which would close every session of the slot.  So libp11 may
 * list keys we destroyed; the raw search is authoritative for count and
 * handle. */
static int
key_lookup(struct p11_ctx *ctx, struct target *t, CK_SESSION_HANDLE s,
    CK_OBJECT_HANDLE *h, enum th_alg *alg)
{
	PKCS11_KEY *keys = NULL, *k;
	CK_OBJECT_HANDLE hs[FIND_MAX];
	CK_ULONG n;
	unsigned int nkeys = 0, i, found = 0, types = 0;
	int r, ktype;

	if (PKCS11_enumerate_keys(t->slot->token, &keys, &nkeys) != 0)
		return lp_fail(TH_ERR_P11, "PKCS11_enumerate_keys");
	for (i = 0; i < nkeys; i++) {
		k = &keys[i];
		if (t->label != NULL && (k->label == NULL ||
		    strlen(k->label) != t->label->ulValueLen ||
		    memcmp(k->label, t->label->pValue, t->label->ulValueLen)))
			continue;
		if (t->id != NULL && (k->id_len != t->id->ulValueLen ||
		    memcmp(k->id, t->id->pValue, k->id_len) != 0))
			continue;
		found++;
		ktype = PKCS11_get_key_type(k);
		if (ktype == EVP_PKEY_EC)
			types |= 1 << TH_ALG_ES256;
		else if (ktype == EVP_PKEY_RSA)
			types |= 1 << TH_ALG_RS256;
	}
	if (found == 0)
		return th_fail(TH_ERR_NOT_FOUND, "no private key matches the "
		    "PKCS#11 URI");
	if ((r = find(ctx, s, CKO_PRIVATE_KEY, t->label, t->id, hs, &n)) != 0)
		return r;
	if (n == 0)
		return th_fail(TH_ERR_NOT_FOUND, "no private key matches the "
		    "PKCS#11 URI");
	if (n > 1)
		return th_fail(TH_ERR_INVALID, "%s%lu private keys match the "
		    "PKCS#11 URI", n == FIND_MAX ? "at least " : "",
		    (unsigned long)n);
	if ((r = key_alg(ctx, s, hs[0], alg)) != 0)
		return r;
	if ((types & (1u << *alg)) == 0)
		return th_fail(TH_ERR_INTERNAL, "libp11 and the token disagree "
		    "on the key type");
	*h = hs[0];
	return 0;
}

/* Fails with TH_ERR_EXISTS if a key object with the label (or the id) is
 * already on the token. */
static int
check_free(struct p11_ctx *ctx, CK_SESSION_HANDLE s, const CK_ATTRIBUTE *label,
    const CK_ATTRIBUTE *id)
{
	static const CK_OBJECT_CLASS cls[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
	CK_OBJECT_HANDLE hs[FIND_MAX];
	CK_ULONG n;
	size_t i;
	int r;

	for (i = 0; i < sizeof(cls) / sizeof(cls[0]); i++) {
		if (label != NULL) {
			if ((r = find(ctx, s, cls[i], label, NULL, hs, &n)) != 0)
				return r;
			if (n != 0)
				return th_fail(TH_ERR_EXISTS, "a key labelled "
				    "\"%.*s\" exists", (int)label->ulValueLen,
				    (const char *)label->pValue);
		}
		if (id != NULL) {
			if ((r = find(ctx, s, cls[i], NULL, id, hs, &n)) != 0)
				return r;
			if (n != 0)
				return th_fail(TH_ERR_EXISTS, "a key with that "
				    "id exists");
		}
	}
	return 0;
}

/* P11_ID_DERIVED_LEN bytes of SHA-256 over the DER SubjectPublicKeyInfo. */
static int
id_derive(EVP_PKEY *pk, uint8_t id[P11_ID_DERIVED_LEN])
{
	uint8_t md[SHA_LEN], *der = NULL;
	int len;

	if ((len = i2d_PUBKEY(pk, &der)) <= 0) {
		ERR_clear_error();
		return th_fail(TH_ERR_CRYPTO, "cannot encode public key");
	}
	sha256(der, (size_t)len, md);
	OPENSSL_free(der);
	memcpy(id, md, P11_ID_DERIVED_LEN);
	return 0;
}

static int
sign_raw(struct p11_key *key, const uint8_t digest[TH_DIGEST_LEN],
    uint8_t sig[TH_SIG_MAX], size_t *siglen)
{
	CK_FUNCTION_LIST_PTR f = key->ctx->f;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	uint8_t in[sizeof(sha256_prefix) + TH_DIGEST_LEN];
	const uint8_t *data = digest;
	CK_ULONG inlen = TH_DIGEST_LEN, outlen = TH_SIG_MAX;
	CK_RV rv;

	if (key->alg == TH_ALG_RS256) {
		mech.mechanism = CKM_RSA_PKCS;
		memcpy(in, sha256_prefix, sizeof(sha256_prefix));
		memcpy(in + sizeof(sha256_prefix), digest, TH_DIGEST_LEN);
		data = in;
		inlen = sizeof(in);
	}
	if ((rv = f->C_SignInit(key->session, &mech, key->handle)) != CKR_OK)
		return ckr_fail("C_SignInit", rv);
	/* The buffer is larger than any signature of ours, so C_Sign never
	 * answers CKR_BUFFER_TOO_SMALL and always ends the operation. */
	if ((rv = f->C_Sign(key->session, (CK_BYTE_PTR)data, inlen, sig,
	    &outlen)) != CKR_OK)
		return ckr_fail("C_Sign", rv);
	if (outlen != key->siglen)
		return th_fail(TH_ERR_P11, "C_Sign returned %lu bytes, not %zu",
		    (unsigned long)outlen, key->siglen);
	*siglen = outlen;
	return 0;
}

/* Verifies a signature as the JOSE consumer would: the self-test that ties
 * a private key object to the public key we report. */
static int
verify(EVP_PKEY *pub, enum th_alg alg, const uint8_t digest[TH_DIGEST_LEN],
    const uint8_t *sig, size_t siglen)
{
	EVP_PKEY_CTX *pc = NULL;
	ECDSA_SIG *es = NULL;
	BIGNUM *br = NULL, *bs = NULL;
	uint8_t *der = NULL;
	const uint8_t *vs = sig;
	int len, r = TH_ERR_INTERNAL;

	if (alg == TH_ALG_ES256) {
		if (siglen != ES256_SIG_LEN ||
		    (es = ECDSA_SIG_new()) == NULL ||
		    (br = BN_bin2bn(sig, 32, NULL)) == NULL ||
		    (bs = BN_bin2bn(sig + 32, 32, NULL)) == NULL ||
		    ECDSA_SIG_set0(es, br, bs) != 1) {
			r = th_fail(TH_ERR_CRYPTO, "bad ES256 signature");
			goto out;
		}
		br = bs = NULL;
		if ((len = i2d_ECDSA_SIG(es, &der)) <= 0) {
			r = th_fail(TH_ERR_CRYPTO, "bad ES256 signature");
			goto out;
		}
		vs = der;
		siglen = (size_t)len;
	}
	if ((pc = EVP_PKEY_CTX_new(pub, NULL)) == NULL ||
	    EVP_PKEY_verify_init(pc) != 1 ||
	    (alg == TH_ALG_RS256 &&
	    EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PADDING) != 1) ||
	    EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "cannot set up verification");
		goto out;
	}
	if (EVP_PKEY_verify(pc, vs, siglen, digest, TH_DIGEST_LEN) != 1) {
		r = th_fail(TH_ERR_CRYPTO, "signature does not verify");
		goto out;
	}
	r = 0;
 out:
	EVP_PKEY_CTX_free(pc);
	ECDSA_SIG_free(es);
	BN_free(br);
	BN_free(bs);
	OPENSSL_free(der);
	ERR_clear_error();
	return r;
}

/* ---- public interface ---- */

int
p11_open(const char *module, const char *pin_file, struct p11_ctx **out)
{
	struct p11_ctx *ctx = NULL;
	CK_RV (*getlist)(CK_FUNCTION_LIST_PTR_PTR);
	CK_INFO info;
	CK_RV rv;
	int r = TH_ERR_INTERNAL, loaded = 0;

	*out = NULL;
	if (module == NULL || *module == '\0')
		return th_fail(TH_ERR_CONFIG, "no PKCS#11 module");
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL)
		return th_fail(TH_ERR_ALLOC, "p11_open");
	if (pin_file != NULL && (ctx->pin_file = strdup(pin_file)) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "p11_open");
		goto out;
	}
	if ((ctx->lctx = PKCS11_CTX_new()) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "PKCS11_CTX_new");
		goto out;
	}
	if (PKCS11_CTX_load(ctx->lctx, module) != 0) {
		r = lp_fail(TH_ERR_UNAVAILABLE, "PKCS11_CTX_load");
		th_fail(r, "cannot load or initialise PKCS#11 module %s",
		    module);
		goto out;
	}
	loaded = 1;
	if (PKCS11_enumerate_slots(ctx->lctx, &ctx->slots, &ctx->nslots) != 0) {
		r = lp_fail(TH_ERR_UNAVAILABLE, "PKCS11_enumerate_slots");
		goto out;
	}
	/* The module libp11 loaded and initialised: RTLD_NOLOAD makes sure we
	 * share that instance rather than load a second one. */
	if ((ctx->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD)) ==
	    NULL ||
	    (getlist = (CK_RV (*)(CK_FUNCTION_LIST_PTR_PTR))dlsym(ctx->dl,
	    "C_GetFunctionList")) == NULL) {
		r = th_fail(TH_ERR_UNAVAILABLE, "%s: no C_GetFunctionList",
		    module);
		goto out;
	}
	if ((rv = getlist(&ctx->f)) != CKR_OK) {
		r = ckr_fail("C_GetFunctionList", rv);
		goto out;
	}
	if ((rv = ctx->f->C_GetInfo(&info)) != CKR_OK) {
		r = ckr_fail("C_GetInfo", rv);
		goto out;
	}
	*out = ctx;
	ctx = NULL;
	r = 0;
 out:
	if (ctx != NULL && !loaded) {
		PKCS11_CTX_free(ctx->lctx);
		ctx->lctx = NULL;
	}
	p11_close(ctx);
	return r;
}

void
p11_close(struct p11_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (ctx->lctx != NULL) {
		if (ctx->slots != NULL)
			PKCS11_release_all_slots(ctx->lctx, ctx->slots,
			    ctx->nslots);
		PKCS11_CTX_unload(ctx->lctx);
		PKCS11_CTX_free(ctx->lctx);
	}
	if (ctx->dl != NULL)
		dlclose(ctx->dl);
	free(ctx->pin_file);
	OPENSSL_cleanse(ctx, sizeof(*ctx));
	free(ctx);
}

int
p11_key_generate(struct p11_ctx *ctx, const char *uri, enum th_alg alg)
{
	struct target t;
	struct tmpl pub = { .n = 0 }, priv = { .n = 0 };
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	CK_ULONG bits = RSA_BITS;
	CK_ATTRIBUTE ida[1];
	EVP_PKEY *pk = NULL;
	uint8_t id[P11_ID_DERIVED_LEN];
	CK_RV rv;
	int r;

	if (alg != TH_ALG_ES256 && alg != TH_ALG_RS256)
		return th_fail(TH_ERR_INVALID, "cannot generate %s keys",
		    th_alg_name(alg));
	if ((r = target_open(ctx, uri, &t)) != 0)
		return r;
	if (t.label == NULL) {
		r = th_fail(TH_ERR_INVALID, "PKCS#11 URI needs object=");
		goto out;
	}
	if ((r = session_open(ctx, t.slotid, 1, &s)) != 0 ||
	    (r = check_free(ctx, s, t.label, t.id)) != 0)
		goto out;

	tmpl_bool(&pub, CKA_TOKEN, 1);
	tmpl_bool(&pub, CKA_PRIVATE, 0);
	tmpl_bool(&pub, CKA_VERIFY, 1);
	tmpl_bool(&pub, CKA_ENCRYPT, 0);
	tmpl_bool(&pub, CKA_WRAP, 0);
	tmpl_add(&pub, CKA_LABEL, t.label->pValue, t.label->ulValueLen);
	tmpl_bool(&priv, CKA_TOKEN, 1);
	tmpl_bool(&priv, CKA_PRIVATE, 1);
	tmpl_bool(&priv, CKA_SENSITIVE, 1);
	tmpl_bool(&priv, CKA_EXTRACTABLE, 0);
	tmpl_bool(&priv, CKA_SIGN, 1);
	tmpl_bool(&priv, CKA_DECRYPT, 0);
	tmpl_bool(&priv, CKA_UNWRAP, 0);
	tmpl_bool(&priv, CKA_DERIVE, 0);
	tmpl_add(&priv, CKA_LABEL, t.label->pValue, t.label->ulValueLen);
	if (t.id != NULL) {
		tmpl_add(&pub, CKA_ID, t.id->pValue, t.id->ulValueLen);
		tmpl_add(&priv, CKA_ID, t.id->pValue, t.id->ulValueLen);
	}
	if (alg == TH_ALG_ES256)
		tmpl_add(&pub, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256));
	else {
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		tmpl_add(&pub, CKA_MODULUS_BITS, &bits, sizeof(bits));
		tmpl_add(&pub, CKA_PUBLIC_EXPONENT, rsa_e65537,
		    sizeof(rsa_e65537));
	}
	rv = ctx->f->C_GenerateKeyPair(s, &mech, pub.a, pub.n, priv.a, priv.n,
	    &hpub, &hpriv);
	if (rv != CKR_OK) {
		hpub = hpriv = CK_INVALID_HANDLE;
		r = ckr_fail("C_GenerateKeyPair", rv);
		goto out;
	}
	if (t.id == NULL) {
		/* Same id convention as import: from the public key. */
		if ((r = pub_from_object(ctx, s, hpub, alg, &pk)) != 0 ||
		    (r = id_derive(pk, id)) != 0)
			goto out;
		ida[0].type = CKA_ID;
		ida[0].pValue = id;
		ida[0].ulValueLen = sizeof(id);
		if ((rv = ctx->f->C_SetAttributeValue(s, hpub, ida, 1)) !=
		    CKR_OK ||
		    (rv = ctx->f->C_SetAttributeValue(s, hpriv, ida, 1)) !=
		    CKR_OK) {
			r = ckr_fail("C_SetAttributeValue(CKA_ID)", rv);
			goto out;
		}
	}
	r = 0;
 out:
	if (r != 0) {
		if (hpriv != CK_INVALID_HANDLE)
			(void)ctx->f->C_DestroyObject(s, hpriv);
		if (hpub != CK_INVALID_HANDLE)
			(void)ctx->f->C_DestroyObject(s, hpub);
	}
	EVP_PKEY_free(pk);
	session_close(ctx, s);
	target_close(&t);
	return r;
}

/* A BIGNUM parameter of pk as big-endian bytes (len 0: minimal length),
 * allocated; freed by the caller with OPENSSL_clear_free. */
static int
param_bytes(EVP_PKEY *pk, const char *name, size_t len, uint8_t **p,
    size_t *plen)
{
	BIGNUM *bn = NULL;
	int r = TH_ERR_INTERNAL;

	*p = NULL;
	if (EVP_PKEY_get_bn_param(pk, name, &bn) != 1) {
		r = th_fail(TH_ERR_INVALID, "key lacks %s", name);
		goto out;
	}
	if (len == 0)
		len = (size_t)BN_num_bytes(bn);
	if (len == 0 || (size_t)BN_num_bytes(bn) > len) {
		r = th_fail(TH_ERR_INVALID, "key parameter %s out of range",
		    name);
		goto out;
	}
	if ((*p = OPENSSL_malloc(len)) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "key parameter");
		goto out;
	}
	if (BN_bn2binpad(bn, *p, (int)len) != (int)len) {
		r = th_fail(TH_ERR_CRYPTO, "key parameter %s", name);
		goto out;
	}
	*plen = len;
	r = 0;
 out:
	if (r != 0) {
		OPENSSL_free(*p);
		*p = NULL;
	}
	BN_clear_free(bn);
	ERR_clear_error();
	return r;
}

#define IMPORT_PARAMS	8

int
p11_key_import(struct p11_ctx *ctx, const char *uri, EVP_PKEY *priv)
{
	static const char *rsa_names[IMPORT_PARAMS] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E,
		OSSL_PKEY_PARAM_RSA_D, OSSL_PKEY_PARAM_RSA_FACTOR1,
		OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
		OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1
	};
	static const CK_ATTRIBUTE_TYPE rsa_attrs[IMPORT_PARAMS] = {
		CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PRIVATE_EXPONENT,
		CKA_PRIME_1, CKA_PRIME_2, CKA_EXPONENT_1, CKA_EXPONENT_2,
		CKA_COEFFICIENT
	};
	static const CK_OBJECT_CLASS cpriv = CKO_PRIVATE_KEY;
	static const CK_OBJECT_CLASS cpub = CKO_PUBLIC_KEY;
	struct target t;
	struct tmpl pub = { .n = 0 }, prv = { .n = 0 };
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	CK_KEY_TYPE kt;
	CK_ATTRIBUTE idattr = { CKA_ID, NULL, 0 };
	uint8_t *v[IMPORT_PARAMS] = { NULL };
	size_t vlen[IMPORT_PARAMS] = { 0 }, i, np = 0, len;
	uint8_t point[EC_POINT_LEN + 2], id[P11_ID_DERIVED_LEN];
	char group[32];
	BIGNUM *f3 = NULL;
	CK_RV rv;
	int r;

	memset(&t, 0, sizeof(t));
	if (priv == NULL)
		return th_fail(TH_ERR_INVALID, "no key to import");
	if (EVP_PKEY_get_base_id(priv) == EVP_PKEY_RSA) {
		if (EVP_PKEY_get_bits(priv) != RSA_BITS)
			return th_fail(TH_ERR_INVALID, "RSA key is not "
			    "2048-bit");
		kt = CKK_RSA;
		/* PKCS#11 holds two-prime keys only. */
		if (EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_RSA_FACTOR3,
		    &f3) == 1) {
			BN_clear_free(f3);
			return th_fail(TH_ERR_INVALID, "multi-prime RSA key");
		}
		ERR_clear_error();
		np = IMPORT_PARAMS;
		for (i = 0; i < np; i++)
			if ((r = param_bytes(priv, rsa_names[i], 0, &v[i],
			    &vlen[i])) != 0)
				goto out;
	} else if (EVP_PKEY_get_base_id(priv) == EVP_PKEY_EC) {
		if (EVP_PKEY_get_utf8_string_param(priv,
		    OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) != 1 ||
		    strcmp(group, "prime256v1") != 0) {
			ERR_clear_error();
			return th_fail(TH_ERR_INVALID, "EC key is not on P-256");
		}
		kt = CKK_EC;
		np = 1;
		if ((r = param_bytes(priv, OSSL_PKEY_PARAM_PRIV_KEY,
		    EC_SCALAR_LEN, &v[0], &vlen[0])) != 0)
			goto out;
		point[0] = 0x04;	/* DER OCTET STRING */
		point[1] = EC_POINT_LEN;
		if (EVP_PKEY_get_octet_string_param(priv,
		    OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point + 2, EC_POINT_LEN,
		    &len) != 1 || len != EC_POINT_LEN || point[2] != 0x04) {
			ERR_clear_error();
			r = th_fail(TH_ERR_INVALID, "EC key has no uncompressed "
			    "public point");
			goto out;
		}
	} else
		return th_fail(TH_ERR_INVALID, "only RSA-2048 and EC P-256 keys "
		    "can be imported");

	if ((r = target_open(ctx, uri, &t)) != 0)
		goto out;
	if (t.label == NULL) {
		r = th_fail(TH_ERR_INVALID, "PKCS#11 URI needs object=");
		goto out;
	}
	if (t.id == NULL) {
		if ((r = id_derive(priv, id)) != 0)
			goto out;
		idattr.pValue = id;
		idattr.ulValueLen = sizeof(id);
	} else
		idattr = *t.id;
	if ((r = session_open(ctx, t.slotid, 1, &s)) != 0 ||
	    (r = check_free(ctx, s, t.label, &idattr)) != 0)
		goto out;

	tmpl_add(&prv, CKA_CLASS, &cpriv, sizeof(cpriv));
	tmpl_add(&prv, CKA_KEY_TYPE, &kt, sizeof(kt));
	tmpl_bool(&prv, CKA_TOKEN, 1);
	tmpl_bool(&prv, CKA_PRIVATE, 1);
	tmpl_bool(&prv, CKA_SENSITIVE, 1);
	tmpl_bool(&prv, CKA_EXTRACTABLE, 0);
	tmpl_bool(&prv, CKA_SIGN, 1);
	tmpl_bool(&prv, CKA_DECRYPT, 0);
	tmpl_bool(&prv, CKA_UNWRAP, 0);
	tmpl_bool(&prv, CKA_DERIVE, 0);
	tmpl_add(&prv, CKA_LABEL, t.label->pValue, t.label->ulValueLen);
	tmpl_add(&prv, CKA_ID, idattr.pValue, idattr.ulValueLen);
	tmpl_add(&pub, CKA_CLASS, &cpub, sizeof(cpub));
	tmpl_add(&pub, CKA_KEY_TYPE, &kt, sizeof(kt));
	tmpl_bool(&pub, CKA_TOKEN, 1);
	tmpl_bool(&pub, CKA_PRIVATE, 0);
	tmpl_bool(&pub, CKA_VERIFY, 1);
	tmpl_bool(&pub, CKA_ENCRYPT, 0);
	tmpl_bool(&pub, CKA_WRAP, 0);
	tmpl_add(&pub, CKA_LABEL, t.label->pValue, t.label->ulValueLen);
	tmpl_add(&pub, CKA_ID, idattr.pValue, idattr.ulValueLen);
	if (kt == CKK_RSA) {
		for (i = 0; i < np; i++)
			tmpl_add(&prv, rsa_attrs[i], v[i], vlen[i]);
		tmpl_add(&pub, CKA_MODULUS, v[0], vlen[0]);
		tmpl_add(&pub, CKA_PUBLIC_EXPONENT, v[1], vlen[1]);
	} else {
		tmpl_add(&prv, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256));
		tmpl_add(&prv, CKA_VALUE, v[0], vlen[0]);
		tmpl_add(&pub, CKA_EC_PARAMS, oid_p256, sizeof(oid_p256));
		tmpl_add(&pub, CKA_EC_POINT, point, sizeof(point));
	}
	if ((rv = ctx->f->C_CreateObject(s, prv.a, prv.n, &hpriv)) != CKR_OK) {
		hpriv = CK_INVALID_HANDLE;
		r = ckr_fail("C_CreateObject(private key)", rv);
		goto out;
	}
	if ((rv = ctx->f->C_CreateObject(s, pub.a, pub.n, &hpub)) != CKR_OK) {
		r = ckr_fail("C_CreateObject(public key)", rv);
		(void)ctx->f->C_DestroyObject(s, hpriv);
		goto out;
	}
	r = 0;
 out:
	for (i = 0; i < IMPORT_PARAMS; i++)
		if (v[i] != NULL)
			OPENSSL_clear_free(v[i], vlen[i]);
	session_close(ctx, s);
	target_close(&t);
	return r;
}

int
p11_key_destroy(struct p11_ctx *ctx, const char *uri)
{
	static const CK_OBJECT_CLASS cls[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
	struct target t;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE hs[FIND_MAX];
	CK_ULONG n, j, total = 0;
	CK_RV rv;
	size_t i;
	int r;

	if ((r = target_open(ctx, uri, &t)) != 0)
		return r;
	if ((r = session_open(ctx, t.slotid, 1, &s)) != 0)
		goto out;
	for (i = 0; i < sizeof(cls) / sizeof(cls[0]); i++) {
		if ((r = find(ctx, s, cls[i], t.label, t.id, hs, &n)) != 0)
			goto out;
		for (j = 0; j < n; j++) {
			if ((rv = ctx->f->C_DestroyObject(s, hs[j])) != CKR_OK) {
				r = ckr_fail("C_DestroyObject", rv);
				goto out;
			}
		}
		total += n;
	}
	r = total == 0 ? th_fail(TH_ERR_NOT_FOUND, "no key matches the "
	    "PKCS#11 URI") : 0;
 out:
	session_close(ctx, s);
	target_close(&t);
	return r;
}

int
p11_key_load(struct p11_ctx *ctx, const char *uri, struct p11_key **out)
{
	struct target t;
	struct p11_key *key = NULL;
	uint8_t digest[TH_DIGEST_LEN], sig[TH_SIG_MAX];
	size_t siglen;
	int r;

	*out = NULL;
	if ((r = target_open(ctx, uri, &t)) != 0)
		return r;
	if ((key = calloc(1, sizeof(*key))) == NULL) {
		r = th_fail(TH_ERR_ALLOC, "p11_key_load");
		goto out;
	}
	key->ctx = ctx;
	key->session = CK_INVALID_HANDLE;
	if ((r = session_open(ctx, t.slotid, 0, &key->session)) != 0 ||
	    (r = key_lookup(ctx, &t, key->session, &key->handle,
	    &key->alg)) != 0 ||
	    (r = pub_for_private(ctx, key->session, key->handle, key->alg,
	    &key->pub)) != 0)
		goto out;
	key->siglen = key->alg == TH_ALG_ES256 ? ES256_SIG_LEN : RSA_BYTES;

	/* The public key we report must verify what the private key signs. */
	sha256((const uint8_t *)"threshold p11 self-test", 23, digest);
	if ((r = sign_raw(key, digest, sig, &siglen)) != 0)
		goto out;
	if ((r = verify(key->pub, key->alg, digest, sig, siglen)) != 0) {
		r = th_fail(TH_ERR_CRYPTO, "the public key object does not "
		    "match the private key");
		goto out;
	}
	*out = key;
	key = NULL;
 out:
	p11_key_free(key);
	target_close(&t);
	return r;
}

void
p11_key_free(struct p11_key *key)
{
	if (key == NULL)
		return;
	session_close(key->ctx, key->session);
	EVP_PKEY_free(key->pub);
	OPENSSL_cleanse(key, sizeof(*key));
	free(key);
}

enum th_alg
p11_key_alg(const struct p11_key *key)
{
	return key == NULL ? TH_ALG_NONE : key->alg;
}

int
p11_key_pubkey(struct p11_key *key, EVP_PKEY **out)
{
	*out = NULL;
	if (key == NULL || key->pub == NULL)
		return th_fail(TH_ERR_INVALID, "no key");
	if (EVP_PKEY_up_ref(key->pub) != 1)
		return th_fail(TH_ERR_INTERNAL, "EVP_PKEY_up_ref");
	*out = key->pub;
	return 0;
}

int
p11_key_health(struct p11_key *key)
{
	CK_OBJECT_CLASS cls;
	CK_ATTRIBUTE a = { CKA_CLASS, &cls, sizeof(cls) };
	CK_RV rv;

	if ((rv = key->ctx->f->C_GetAttributeValue(key->session, key->handle,
	    &a, 1)) != CKR_OK)
		return ckr_fail("C_GetAttributeValue", rv);
	return 0;
}

int
p11_sign(struct p11_key *key, const uint8_t digest[TH_DIGEST_LEN],
    uint8_t *sig, size_t *siglen)
{
	uint8_t buf[TH_SIG_MAX];
	size_t len;
	int r;

	if (key == NULL || digest == NULL || sig == NULL || siglen == NULL)
		return th_fail(TH_ERR_INVALID, "p11_sign: missing argument");
	if (*siglen < key->siglen)
		return th_fail(TH_ERR_INVALID, "p11_sign: %zu-byte buffer for "
		    "a %zu-byte signature", *siglen, key->siglen);
	if ((r = sign_raw(key, digest, buf, &len)) != 0)
		return r;
	memcpy(sig, buf, len);
	*siglen = len;
	return 0;
}

/* Asks for a secret attribute's length only (no value ever reaches us):
 * the token must answer CKR_ATTRIBUTE_SENSITIVE. */
static int
check_sensitive(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h,
    CK_ATTRIBUTE_TYPE type, const char *name)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_RV rv;

	rv = ctx->f->C_GetAttributeValue(s, h, &a, 1);
	if (rv == CKR_ATTRIBUTE_SENSITIVE)
		return 0;
	return th_fail(TH_ERR_P11, "reading %s: token answered %s (0x%lx), "
	    "not CKR_ATTRIBUTE_SENSITIVE", name, ckr_name(rv),
	    (unsigned long)rv);
}

/* Tries to wrap the key under a fresh AES session key (length query only):
 * the token must refuse with CKR_KEY_UNEXTRACTABLE (or
 * CKR_KEY_NOT_WRAPPABLE, a token that wraps no private keys at all). */
static int
check_unwrappable(struct p11_ctx *ctx, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h)
{
	static const CK_MECHANISM_TYPE wraps[] = {
		CKM_AES_KEY_WRAP_PAD, CKM_AES_KEY_WRAP, CKM_AES_CBC_PAD
	};
	CK_MECHANISM gen = { CKM_AES_KEY_GEN, NULL, 0 }, mech;
	CK_ULONG keylen = 32, len;
	CK_OBJECT_HANDLE wk = CK_INVALID_HANDLE;
	struct tmpl t = { .n = 0 };
	uint8_t iv[16] = { 0 };
	CK_RV rv = CKR_OK;
	size_t i;
	int r = TH_ERR_INTERNAL;

	tmpl_bool(&t, CKA_TOKEN, 0);
	tmpl_bool(&t, CKA_WRAP, 1);
	tmpl_bool(&t, CKA_ENCRYPT, 0);
	tmpl_bool(&t, CKA_DECRYPT, 0);
	tmpl_add(&t, CKA_VALUE_LEN, &keylen, sizeof(keylen));
	if ((rv = ctx->f->C_GenerateKey(s, &gen, t.a, t.n, &wk)) != CKR_OK) {
		wk = CK_INVALID_HANDLE;
		r = ckr_fail("C_GenerateKey(AES wrapping key)", rv);
		goto out;
	}
	for (i = 0; i < sizeof(wraps) / sizeof(wraps[0]); i++) {
		mech.mechanism = wraps[i];
		mech.pParameter = wraps[i] == CKM_AES_CBC_PAD ? iv : NULL;
		mech.ulParameterLen = wraps[i] == CKM_AES_CBC_PAD ?
		    sizeof(iv) : 0;
		len = 0;
		rv = ctx->f->C_WrapKey(s, &mech, wk, h, NULL, &len);
		if (rv != CKR_MECHANISM_INVALID)
			break;
	}
	if (rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE)
		r = 0;
	else if (rv == CKR_OK)
		r = th_fail(TH_ERR_P11, "the token would wrap the private key");
	else
		r = th_fail(TH_ERR_P11, "C_WrapKey answered %s (0x%lx), not "
		    "CKR_KEY_UNEXTRACTABLE", ckr_name(rv), (unsigned long)rv);
 out:
	if (wk != CK_INVALID_HANDLE)
		(void)ctx->f->C_DestroyObject(s, wk);
	return r;
}

int
p11_key_check_unexportable(struct p11_ctx *ctx, const char *uri)
{
	static const struct {
		CK_ATTRIBUTE_TYPE type;
		const char *name;
	} rsa_secret[] = {
		{ CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT" },
		{ CKA_PRIME_1, "CKA_PRIME_1" },
		{ CKA_PRIME_2, "CKA_PRIME_2" },
		{ CKA_EXPONENT_1, "CKA_EXPONENT_1" },
		{ CKA_EXPONENT_2, "CKA_EXPONENT_2" },
		{ CKA_COEFFICIENT, "CKA_COEFFICIENT" },
	};
	struct target t;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE h;
	CK_BBOOL sens = CK_FALSE, extr = CK_TRUE;
	enum th_alg alg;
	size_t i;
	int r;

	if ((r = target_open(ctx, uri, &t)) != 0)
		return r;
	if ((r = session_open(ctx, t.slotid, 0, &s)) != 0 ||
	    (r = key_lookup(ctx, &t, s, &h, &alg)) != 0 ||
	    (r = attr_fixed(ctx, s, h, CKA_SENSITIVE, &sens,
	    sizeof(sens))) != 0 ||
	    (r = attr_fixed(ctx, s, h, CKA_EXTRACTABLE, &extr,
	    sizeof(extr))) != 0)
		goto out;
	if (sens != CK_TRUE || extr != CK_FALSE) {
		r = th_fail(TH_ERR_P11, "key has CKA_SENSITIVE=%s, "
		    "CKA_EXTRACTABLE=%s", sens ? "true" : "false",
		    extr ? "true" : "false");
		goto out;
	}
	if (alg == TH_ALG_ES256)
		r = check_sensitive(ctx, s, h, CKA_VALUE, "CKA_VALUE");
	else
		for (i = 0, r = 0; r == 0 &&
		    i < sizeof(rsa_secret) / sizeof(rsa_secret[0]); i++)
			r = check_sensitive(ctx, s, h, rsa_secret[i].type,
			    rsa_secret[i].name);
	if (r != 0)
		goto out;
	r = check_unwrappable(ctx, s, h);
 out:
	session_close(ctx, s);
	target_close(&t);
	return r;
}
