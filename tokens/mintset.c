/* Open addressing on the hash's first bytes (already uniform), linear
 * probing over a short window; expired slots are reused. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "mintset.h"

struct slot {
	uint8_t		h[32];
	int64_t		exp;		/* 0: empty */
};

struct mintset {
	pthread_mutex_t	 lock;
	struct slot	*slots;
};

static size_t
home(const uint8_t h[32])
{
	uint32_t v;

	memcpy(&v, h, sizeof(v));
	return v & (MINTSET_SLOTS - 1);
}

struct mintset *
mintset_new(void)
{
	struct mintset *m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if ((m->slots = calloc(MINTSET_SLOTS, sizeof(*m->slots))) == NULL ||
	    pthread_mutex_init(&m->lock, NULL) != 0) {
		free(m->slots);
		free(m);
		return NULL;
	}
	return m;
}

void
mintset_free(struct mintset *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->slots);
	free(m);
}

void
mintset_add(struct mintset *m, const uint8_t h[32], int64_t exp)
{
	struct slot *s, *oldest = NULL;
	size_t i, at = home(h);

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < MINTSET_PROBE; i++) {
		s = &m->slots[(at + i) & (MINTSET_SLOTS - 1)];
		if (oldest == NULL || s->exp < oldest->exp)
			oldest = s;
	}
	/* The slot expiring first is free or the least useful. */
	memcpy(oldest->h, h, 32);
	oldest->exp = exp;
	pthread_mutex_unlock(&m->lock);
}

int
mintset_has(struct mintset *m, const uint8_t h[32], int64_t now)
{
	struct slot *s;
	size_t i, at = home(h);
	int found = 0;

	pthread_mutex_lock(&m->lock);
	for (i = 0; i < MINTSET_PROBE && !found; i++) {
		s = &m->slots[(at + i) & (MINTSET_SLOTS - 1)];
		found = s->exp > now && memcmp(s->h, h, 32) == 0;
	}
	pthread_mutex_unlock(&m->lock);
	return found;
}
