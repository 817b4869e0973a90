/* A ring of batches of lines: read at enq, handed to workers at taken,
 * handed back at col (col <= taken <= enq, enq - col <= VLINES_RING). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "vlines.h"

struct batch {
	char		*text;		/* the lines back to back */
	size_t		 used, cap;
	size_t		 off[VLINES_BATCH], len[VLINES_BATCH];
	struct vline	 vl[VLINES_BATCH];
	size_t		 n;
	int		 done;		/* prepared */
};

struct vlines {
	pthread_mutex_t	 mu;
	pthread_cond_t	 work, done;
	struct batch	 ring[VLINES_RING];
	uint64_t	 enq, taken, col;
	int		 quit;
	vlines_prep_fn	 prep;
	pthread_t	 th[VLINES_THREADS_MAX];
	int		 nth;
};

static void
prepare(struct vlines *p, struct batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		if (b->vl[i].bad == NULL)
			p->prep(b->text + b->off[i], b->len[i], &b->vl[i]);
}

static void *
worker(void *arg)
{
	struct vlines *p = arg;
	struct batch *b;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->taken == p->enq && !p->quit)
			pthread_cond_wait(&p->work, &p->mu);
		if (p->quit)
			break;
		b = &p->ring[p->taken++ % VLINES_RING];
		pthread_mutex_unlock(&p->mu);
		prepare(p, b);
		pthread_mutex_lock(&p->mu);
		b->done = 1;
		pthread_cond_broadcast(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int
append(struct batch *b, const char *line, size_t len)
{
	size_t cap;
	char *t;

	if (b->cap - b->used < len) {
		cap = b->cap ? b->cap : 64 * 1024;
		while (cap - b->used < len)
			cap *= 2;
		if ((t = realloc(b->text, cap)) == NULL)
			return TH_ERR_ALLOC;
		b->text = t;
		b->cap = cap;
	}
	memcpy(b->text + b->used, line, len);
	b->off[b->n] = b->used;
	b->len[b->n] = len;
	b->used += len;
	return 0;
}

/* The input read in blocks, lines found with memchr: reading a character
 * at a time (getc) cost as much as a fifth of parsing every line. */
struct reader {
	FILE	*f;
	char	*buf;
	size_t	 off, len;
	int	 end;		/* fread gave nothing more */
};

/* The next line (without its '\n') into line: 1 with *len, 0 at the end
 * of the input, TH_ERR_TOO_LONG once it exceeds max bytes. */
static int
read_line(struct reader *rd, char *line, size_t max, size_t *len)
{
	const char *p, *nl;
	size_t n;

	*len = 0;
	for (;;) {
		if (rd->off == rd->len) {
			if (rd->end)
				return *len > 0 ? 1 : 0;
			rd->off = 0;
			if ((rd->len = fread(rd->buf, 1, VLINES_READ,
			    rd->f)) == 0)
				rd->end = 1;
			continue;
		}
		p = rd->buf + rd->off;
		nl = memchr(p, '\n', rd->len - rd->off);
		n = nl != NULL ? (size_t)(nl - p) : rd->len - rd->off;
		if (n > max - *len)
			return TH_ERR_TOO_LONG;
		memcpy(line + *len, p, n);
		*len += n;
		rd->off += n;
		if (nl != NULL) {
			rd->off++;
			return 1;
		}
	}
}

/* Reads up to VLINES_BATCH lines of at most max bytes into b, fewer if
 * they come to VLINES_BATCH_BYTES (long lines would otherwise hold the ring
 * at VLINES_RING * VLINES_BATCH times the longest).  Returns 1
 * when the input ends (f's end or error, or a line the reader refuses, the
 * batch's last), 0 when there is more, or an error. */
static int
fill(struct reader *rd, size_t max, char *line, unsigned long long *lineno,
    struct batch *b)
{
	struct vline *vl;
	size_t len;
	int r;

	b->n = 0;
	b->used = 0;
	b->done = 0;
	while (b->n < VLINES_BATCH && b->used < VLINES_BATCH_BYTES) {
		vl = &b->vl[b->n];
		memset(vl, 0, sizeof(*vl));
		if ((r = read_line(rd, line, max, &len)) == 0)
			return 1;
		vl->lineno = ++*lineno;
		if (r == TH_ERR_TOO_LONG) {
			snprintf(vl->why, sizeof(vl->why),
			    "longer than %zu bytes", max);
			vl->bad = vl->why;
			b->n++;
			return 1;
		}
		if (len == 0) {
			vl->bad = "empty line";
			b->n++;
			return 1;
		}
		if ((r = append(b, line, len)) != 0)
			return r;
		b->n++;
	}
	return 0;
}

static void
stop_workers(struct vlines *p)
{
	int i;

	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	p->nth = 0;
}

static void
vlines_free(struct vlines *p)
{
	size_t i, j;

	stop_workers(p);
	for (i = 0; i < VLINES_RING; i++) {
		for (j = 0; j < VLINES_BATCH; j++)
			json_object_put(p->ring[i].vl[j].o);
		free(p->ring[i].text);
	}
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(p);
}

int
vlines_run(FILE *f, const char *name, size_t max, int nthreads,
    vlines_prep_fn prep, vlines_use_fn use, void *arg)
{
	unsigned long long lineno = 0;
	struct reader rd = { .f = f };
	struct vlines *p;
	struct batch *b;
	char *line = NULL;
	size_t i;
	int r = 0, end = 0;

	if (nthreads < 0 || nthreads > VLINES_THREADS_MAX)
		return th_fail(TH_ERR_INVALID, "vlines: 0..%d threads",
		    VLINES_THREADS_MAX);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return TH_ERR_ALLOC;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	p->prep = prep;
	if ((line = malloc(max + 1)) == NULL ||
	    (rd.buf = malloc(VLINES_READ)) == NULL) {
		r = TH_ERR_ALLOC;
		goto out;
	}
	for (; p->nth < nthreads; p->nth++)
		if (pthread_create(&p->th[p->nth], NULL, worker, p) != 0)
			break;
	for (;;) {
		/* Keep the ring full, then hand back the oldest batch. */
		while (!end && p->enq - p->col < VLINES_RING) {
			b = &p->ring[p->enq % VLINES_RING];
			if ((end = fill(&rd, max, line, &lineno, b)) < 0) {
				r = end;
				goto out;
			}
			if (p->nth == 0) {
				prepare(p, b);
				b->done = 1;
			}
			pthread_mutex_lock(&p->mu);
			p->enq++;
			pthread_cond_signal(&p->work);
			pthread_mutex_unlock(&p->mu);
		}
		if (p->col == p->enq)
			break;
		b = &p->ring[p->col % VLINES_RING];
		pthread_mutex_lock(&p->mu);
		while (!b->done)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
		for (i = 0; i < b->n && r == 0; i++) {
			r = use(&b->vl[i], arg);
			json_object_put(b->vl[i].o);
			b->vl[i].o = NULL;
		}
		p->col++;
		if (r != 0)
			goto out;
	}
	if (ferror(f))
		r = th_fail(TH_ERR_IO, "reading %s failed", name);
 out:
	free(rd.buf);
	free(line);
	vlines_free(p);
	return r;
}
