#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "sha.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static EVP_MD *md;

static void
fetch(void)
{
	md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void
sha256(const void *p, size_t len, uint8_t out[SHA_LEN])
{
	pthread_once(&once, fetch);
	/* Should the fetch fail, the one-shot still gives the same bytes. */
	if (md == NULL || EVP_Digest(p, len, out, NULL, md, NULL) != 1)
		SHA256(p, len, out);
}

const EVP_MD *
sha256_md(void)
{
	pthread_once(&once, fetch);
	return md != NULL ? md : EVP_sha256();
}
