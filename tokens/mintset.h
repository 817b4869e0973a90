/* The capabilities this process minted and that have not expired, by the
 * SHA-256 of their exact bytes: redeeming one of them needs no signature
 * check, since those bytes are what the signer signed for us.  Bounded:
 * an insert takes the slot expiring first near its hash, and a token
 * evicted that way is verified as any other.  Thread-safe. */
#ifndef TH_MINTSET_H
#define TH_MINTSET_H

#include <stddef.h>
#include <stdint.h>

#define MINTSET_SLOTS		(1 << 17)	/* 131072 tokens, ~5 MiB */
#define MINTSET_PROBE		32

struct mintset;

struct mintset	*mintset_new(void);			/* NULL: no memory */
void		 mintset_free(struct mintset *m);	/* NULL ok */
void		 mintset_add(struct mintset *m, const uint8_t h[32],
		    int64_t exp);
/* 1 if h was added and its exp is after now. */
int		 mintset_has(struct mintset *m, const uint8_t h[32],
		    int64_t now);

#endif
