#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "err.h"
#include "proto.h"
#include "tpm.h"

static const char *purpose_names[PURPOSE_COUNT] = {
	"delegation-root", "capability", "github-app", "attestation",
	"attenuation", "audit"
};

const char *
purpose_name(enum purpose p)
{
	return (unsigned)p < PURPOSE_COUNT ? purpose_names[p] : "?";
}

int
purpose_from_name(const char *name)
{
	int i;

	for (i = 0; i < PURPOSE_COUNT; i++)
		if (strcmp(name, purpose_names[i]) == 0)
			return i;
	return -1;
}

const char *
backend_name(enum backend b)
{
	switch (b) {
	case BACKEND_TPM:	return "tpm";
	case BACKEND_PKCS11:	return "pkcs11";
	default:		return "none";
	}
}

static int
copy_value(char *dst, size_t dstsz, const char *v)
{
	if (strlen(v) >= dstsz)
		return -1;
	strcpy(dst, v);
	return 0;
}

static int
parse_key(struct config *cfg, const char *purpose, const char *ref)
{
	struct config_key *k;
	unsigned long h;
	char *end;
	int p;

	if ((p = purpose_from_name(purpose)) < 0)
		return th_fail(TH_ERR_CONFIG, "unknown key purpose \"%s\" "
		    "(expected delegation-root, capability, github-app, "
		    "attestation, attenuation or audit)", purpose);
	k = &cfg->keys[p];
	if (k->backend != BACKEND_NONE)
		return th_fail(TH_ERR_CONFIG, "key %s given twice", purpose);
	if (strncmp(ref, "tpm:", 4) == 0) {
		errno = 0;
		h = strtoul(ref + 4, &end, 16);
		if (errno != 0 || *end != '\0' || end == ref + 4 ||
		    h < 0x81000000UL || h > 0x81ffffffUL)
			return th_fail(TH_ERR_CONFIG, "key %s: \"%s\" is not a "
			    "TPM persistent handle (tpm:0x81xxxxxx)", purpose,
			    ref);
		k->backend = BACKEND_TPM;
		k->tpm_handle = (uint32_t)h;
	} else if (strncmp(ref, "pkcs11:", 7) == 0) {
		if (strstr(ref, "pin-value") != NULL)
			return th_fail(TH_ERR_CONFIG, "key %s: a PIN never goes "
			    "in the URI; use pin-source=file:PATH or "
			    "pkcs11-pin-file", purpose);
		if (copy_value(k->uri, sizeof(k->uri), ref) != 0)
			return th_fail(TH_ERR_CONFIG, "key %s: URI too long",
			    purpose);
		k->backend = BACKEND_PKCS11;
	} else
		return th_fail(TH_ERR_CONFIG, "key %s: \"%s\" is neither "
		    "tpm:HANDLE nor a pkcs11: URI", purpose, ref);
	if (p == PURPOSE_ATTESTATION && k->backend != BACKEND_TPM)
		return th_fail(TH_ERR_CONFIG, "the attestation key must be a "
		    "TPM key (quotes need a TPM)");
	return 0;
}

/* allow-uid UID [PURPOSE ...]: v is UID, rest the purposes. */
static int
parse_uid(struct config *cfg, const char *v, char **rest)
{
	unsigned long u;
	uint32_t mask = 0;
	char *end, *name;
	int p;

	errno = 0;
	u = strtoul(v, &end, 10);
	if (errno != 0 || *end != '\0' || end == v || u >= UINT_MAX)
		return th_fail(TH_ERR_CONFIG, "bad uid \"%s\"", v);
	if (cfg->nuids == CONFIG_UIDS_MAX)
		return th_fail(TH_ERR_CONFIG, "more than %d allow-uid lines",
		    CONFIG_UIDS_MAX);
	if (config_peer_purposes(cfg, (uid_t)u) != 0)
		return th_fail(TH_ERR_CONFIG, "uid %lu given twice", u);
	while ((name = strtok_r(NULL, " \t", rest)) != NULL) {
		if ((p = purpose_from_name(name)) < 0)
			return th_fail(TH_ERR_CONFIG, "allow-uid: unknown "
			    "purpose \"%s\"", name);
		mask |= 1u << p;
	}
	cfg->uids[cfg->nuids] = (uid_t)u;
	cfg->uid_purposes[cfg->nuids++] = mask != 0 ? mask :
	    (1u << PURPOSE_COUNT) - 1;
	return 0;
}

uint32_t
config_peer_purposes(const struct config *cfg, uid_t uid)
{
	size_t i;

	for (i = 0; i < cfg->nuids; i++)
		if (cfg->uids[i] == uid)
			return cfg->uid_purposes[i];
	return 0;
}

static int
parse_line(struct config *cfg, char *line)
{
	char *name, *v, *v2, *end;
	unsigned long mode;

	name = strtok_r(line, " \t", &end);
	if (name == NULL || name[0] == '#')
		return 0;
	if ((v = strtok_r(NULL, " \t", &end)) == NULL)
		return th_fail(TH_ERR_CONFIG, "\"%s\" needs a value", name);
	if (strcmp(name, "allow-uid") == 0)
		return parse_uid(cfg, v, &end);
	v2 = strtok_r(NULL, " \t", &end);
	if (strcmp(name, "key") == 0) {
		if (v2 == NULL || strtok_r(NULL, " \t", &end) != NULL)
			return th_fail(TH_ERR_CONFIG,
			    "usage: key PURPOSE tpm:HANDLE|pkcs11:URI");
		return parse_key(cfg, v, v2);
	}
	if (v2 != NULL)
		return th_fail(TH_ERR_CONFIG, "\"%s\" takes one value", name);
	if (strcmp(name, "socket") == 0) {
		if (copy_value(cfg->socket, sizeof(cfg->socket), v) != 0)
			return th_fail(TH_ERR_CONFIG, "socket path too long");
	} else if (strcmp(name, "socket-mode") == 0) {
		mode = strtoul(v, &end, 8);
		if (*end != '\0' || (mode != 0600 && mode != 0660))
			return th_fail(TH_ERR_CONFIG,
			    "socket-mode must be 0600 or 0660");
		cfg->socket_mode = (mode_t)mode;
	} else if (strcmp(name, "tpm-tcti") == 0) {
		if (copy_value(cfg->tcti, sizeof(cfg->tcti), v) != 0)
			return th_fail(TH_ERR_CONFIG, "tpm-tcti too long");
	} else if (strcmp(name, "pkcs11-module") == 0) {
		if (copy_value(cfg->p11_module, sizeof(cfg->p11_module), v))
			return th_fail(TH_ERR_CONFIG, "pkcs11-module too long");
	} else if (strcmp(name, "pkcs11-pin-file") == 0) {
		if (copy_value(cfg->p11_pin_file, sizeof(cfg->p11_pin_file), v))
			return th_fail(TH_ERR_CONFIG, "pkcs11-pin-file too long");
	} else if (strcmp(name, "github-app-id") == 0) {
		if (copy_value(cfg->app_id, sizeof(cfg->app_id), v) != 0)
			return th_fail(TH_ERR_CONFIG, "github-app-id too long");
	} else if (strcmp(name, "quote-pcrs") == 0) {
		if (copy_value(cfg->quote_pcrs, sizeof(cfg->quote_pcrs), v))
			return th_fail(TH_ERR_CONFIG, "quote-pcrs too long");
	} else
		return th_fail(TH_ERR_CONFIG, "unknown directive \"%s\"", name);
	return 0;
}

/* A TPM key where docs/keys.md puts its kind: the attestation key in the
 * endorsement range, a signing key in the owner range (the SRK aside). */
static int
tpm_handle_check(int p, uint32_t h)
{
	if (p == PURPOSE_ATTESTATION &&
	    (h < TPM_EK_PERSIST_FIRST || h > TPM_EK_PERSIST_LAST))
		return th_fail(TH_ERR_CONFIG, "key attestation: tpm:0x%08x is "
		    "outside the endorsement range 0x%08x-0x%08x",
		    (unsigned)h, TPM_EK_PERSIST_FIRST, TPM_EK_PERSIST_LAST);
	if (p != PURPOSE_ATTESTATION && (h < TPM_OWNER_PERSIST_FIRST ||
	    h > TPM_OWNER_PERSIST_LAST || h == TPM_SRK_HANDLE))
		return th_fail(TH_ERR_CONFIG, "key %s: tpm:0x%08x is outside "
		    "the owner range 0x%08x-0x%08x, or the storage root key",
		    purpose_name((enum purpose)p), (unsigned)h,
		    TPM_OWNER_PERSIST_FIRST, TPM_OWNER_PERSIST_LAST);
	return 0;
}

/* One key per purpose: a key shared by two would sign both kinds of
 * payload.  Two URIs that differ in text but name one object are not
 * caught here. */
static int
keys_distinct(const struct config *cfg)
{
	const struct config_key *a, *b;
	int i, j, r;

	for (i = 0; i < PURPOSE_COUNT; i++) {
		a = &cfg->keys[i];
		if (a->backend == BACKEND_TPM &&
		    (r = tpm_handle_check(i, a->tpm_handle)) != 0)
			return r;
		for (j = 0; j < i; j++) {
			b = &cfg->keys[j];
			if (a->backend == BACKEND_NONE ||
			    a->backend != b->backend ||
			    (a->backend == BACKEND_TPM &&
			    a->tpm_handle != b->tpm_handle) ||
			    (a->backend == BACKEND_PKCS11 &&
			    strcmp(a->uri, b->uri) != 0))
				continue;
			return th_fail(TH_ERR_CONFIG, "keys %s and %s are the "
			    "same key: each purpose needs its own",
			    purpose_name((enum purpose)j),
			    purpose_name((enum purpose)i));
		}
	}
	return 0;
}

static int
config_check(struct config *cfg)
{
	int i, r, tpm = 0, p11 = 0;

	if (cfg->socket[0] == '\0')
		return th_fail(TH_ERR_CONFIG, "no socket given");
	for (i = 0; i < PURPOSE_COUNT; i++) {
		tpm |= cfg->keys[i].backend == BACKEND_TPM;
		p11 |= cfg->keys[i].backend == BACKEND_PKCS11;
	}
	if (tpm && cfg->tcti[0] == '\0')
		return th_fail(TH_ERR_CONFIG, "TPM keys configured but no "
		    "tpm-tcti");
	if (p11 && cfg->p11_module[0] == '\0')
		return th_fail(TH_ERR_CONFIG, "PKCS#11 keys configured but no "
		    "pkcs11-module");
	if (cfg->keys[PURPOSE_GITHUB_APP].backend != BACKEND_NONE &&
	    cfg->app_id[0] == '\0')
		return th_fail(TH_ERR_CONFIG, "github-app key configured but "
		    "no github-app-id");
	if ((r = keys_distinct(cfg)) != 0)
		return r;
	if (cfg->keys[PURPOSE_ATTESTATION].backend != BACKEND_NONE &&
	    cfg->quote_pcrs[0] == '\0')
		strcpy(cfg->quote_pcrs, "sha256:0,1,2,3,4,5,6,7");
	return 0;
}

int
config_load(const char *path, struct config *cfg)
{
	char line[CONFIG_LINE_MAX];
	FILE *f = NULL;
	size_t len;
	int r = 0, lineno = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->socket_mode = 0600;
	if ((f = fopen(path, "re")) == NULL)
		return th_fail(TH_ERR_CONFIG, "cannot open %s: %s", path,
		    strerror(errno));
	while (fgets(line, sizeof(line), f) != NULL) {
		lineno++;
		len = strlen(line);
		if (len > 0 && line[len - 1] != '\n' && !feof(f)) {
			r = th_fail(TH_ERR_CONFIG, "%s:%d: line too long", path,
			    lineno);
			goto out;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if ((r = parse_line(cfg, line)) != 0) {
			r = th_fail(r, "%s:%d: %s", path, lineno, th_errmsg(r));
			goto out;
		}
	}
	if (ferror(f)) {
		r = th_fail(TH_ERR_CONFIG, "reading %s failed", path);
		goto out;
	}
	if ((r = config_check(cfg)) != 0)
		r = th_fail(r, "%s: %s", path, th_errmsg(r));
 out:
	fclose(f);
	return r;
}
