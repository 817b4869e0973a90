/* audit/vlines: every line handed back once, in file order, however many
 * workers prepared them and in whatever order they finished; a refused line
 * (empty, too long) ends the reading and comes back last; the user can stop
 * early; what was prepared and not handed back is released (ASan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "err.h"
#include "vlines.h"

struct seen {
	unsigned long long	 n;		/* lines handed back */
	unsigned long long	 stop_at;	/* 0: never */
	char			 last_bad[64];	/* the refusal, copied */
};

/* Each line is a number; some take longer to prepare, so that workers
 * finish out of order. */
static void
prep(const char *line, size_t len, struct vline *vl)
{
	size_t i;
	int n = 0;

	for (i = 0; i < len && line[i] >= '0' && line[i] <= '9'; i++)
		n = n * 10 + (line[i] - '0');
	if (n % 7 == 0)
		usleep(300);
	vl->o = json_object_new_int(n);
}

static int
use(struct vline *vl, void *arg)
{
	struct seen *s = arg;

	s->n++;
	assert_int_equal(vl->lineno, s->n);
	if (vl->bad != NULL) {
		snprintf(s->last_bad, sizeof(s->last_bad), "%s", vl->bad);
		assert_null(vl->o);
		return 0;
	}
	assert_non_null(vl->o);
	assert_int_equal(json_object_get_int(vl->o), (int)vl->lineno);
	return s->stop_at != 0 && s->n == s->stop_at ? TH_ERR_DENIED : 0;
}

/* n lines "1".."n", each padded with pad spaces; at line bad_at (if not 0)
 * the line bad instead; the last line without its newline. */
static FILE *
lines(unsigned n, unsigned bad_at, const char *bad, unsigned pad)
{
	FILE *f = tmpfile();
	unsigned i;

	assert_non_null(f);
	for (i = 1; i <= n; i++) {
		if (i == bad_at)
			fprintf(f, "%s", bad);
		else
			fprintf(f, "%u%*s", i, (int)pad, "");
		if (i < n)
			fputc('\n', f);
	}
	rewind(f);
	return f;
}

/* Runs vlines over lines(n, bad_at, bad) with max and threads; the
 * result, with what use() saw in *s. */
static int
run(unsigned n, unsigned bad_at, const char *bad, size_t max, int threads,
    unsigned long long stop_at, struct seen *s)
{
	FILE *f = lines(n, bad_at, bad, max > 16 ? (unsigned)max - 16 : 0);
	int r;

	memset(s, 0, sizeof(*s));
	s->stop_at = stop_at;
	r = vlines_run(f, "t", max, threads, prep, use, s);
	fclose(f);
	return r;
}

static void
test_in_order(void **state)
{
	int threads[] = { 0, 1, 3, VLINES_THREADS_MAX };
	unsigned n = VLINES_BATCH * VLINES_RING * 2 + 5;
	struct seen s;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(threads) / sizeof(threads[0]); i++) {
		assert_int_equal(run(n, 0, NULL, 16, threads[i], 0, &s), 0);
		assert_int_equal(s.n, n);
		assert_string_equal(s.last_bad, "");
	}
	/* Long lines: batches close on bytes, not on the line count. */
	assert_int_equal(run(VLINES_RING * 10, 0, NULL, VLINES_BATCH_BYTES / 3,
	    2, 0, &s), 0);
	assert_int_equal(s.n, VLINES_RING * 10);
}

static void
test_refused_lines_end_it(void **state)
{
	struct seen s;

	(void)state;
	assert_int_equal(run(3000, 1500, "", 16, 2, 0, &s), 0);
	assert_int_equal(s.n, 1500);
	assert_string_equal(s.last_bad, "empty line");
	assert_int_equal(run(3000, 70, "12345678901234567", 16, 2, 0, &s), 0);
	assert_int_equal(s.n, 70);
	assert_string_equal(s.last_bad, "longer than 16 bytes");
	/* Exactly max bytes is fine. */
	assert_int_equal(run(3, 0, NULL, 1, 2, 0, &s), 0);
	assert_int_equal(s.n, 3);
}

/* A last line ended by '\n' is not followed by an empty one; lines that
 * straddle the reader's blocks come back whole. */
static void
test_line_ends(void **state)
{
	size_t len = VLINES_READ / 3 + 7, k;
	struct seen s;
	FILE *f;
	int i;

	(void)state;
	assert_non_null(f = tmpfile());
	for (i = 1; i <= 10; i++) {
		fprintf(f, "%d", i);
		for (k = 0; k < len; k++)
			fputc(' ', f);
		fputc('\n', f);
	}
	rewind(f);
	memset(&s, 0, sizeof(s));
	assert_int_equal(vlines_run(f, "t", len + 2, 2, prep, use, &s), 0);
	assert_int_equal(s.n, 10);
	assert_string_equal(s.last_bad, "");
	fclose(f);
}

static void
test_user_stops(void **state)
{
	struct seen s;

	(void)state;
	assert_int_equal(run(5000, 0, NULL, 16, 3, 1000, &s), TH_ERR_DENIED);
	assert_int_equal(s.n, 1000);
}

static void
test_empty_file(void **state)
{
	struct seen s;
	FILE *f = tmpfile();

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(vlines_run(f, "t", 16, 2, prep, use, &s), 0);
	assert_int_equal(s.n, 0);
	fclose(f);
	assert_int_equal(vlines_run(stdin, "t", 16, 99, prep, use, &s),
	    TH_ERR_INVALID);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_refused_lines_end_it),
		cmocka_unit_test(test_user_stops),
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_empty_file),
	};

	return cmocka_run_group_tests_name("vlines", tests, NULL, NULL);
}
