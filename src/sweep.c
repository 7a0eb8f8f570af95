/*
 * Sweep: roll every due window in the store.
 *
 * The sweep walks the map with ck_hs_next_spmc inside an epoch section and
 * rolls each due record through the same CAS loop as every other write,
 * with a transition that rolls what is due and nothing else. A CAS that
 * fails because a bump (which rolls inline) got there first re-reads the
 * record and finds nothing due: the sweep's roll is a no-op, and two
 * sweepers produce one roll per window.
 *
 * Reports are delivered outside the section, so the walk leaves and
 * re-enters it after each roll. While outside, a grow may retire the map
 * the iterator walks; the store's map generation tells, and the walk then
 * starts over on the new map (records already rolled are no longer due, so
 * starting over only costs time).
 */
#include <string.h>

#include "internal.h"

static bool
due(const struct tally__record *r, const void *snap, int64_t now)
{
	if (r->kind == TALLY_KIND_BUDGET) {
		const struct tally__budget_snap *b = snap;

		return tally__window_due(now, b->window_end);
	} else {
		const struct tally__rl_snap *q = snap;

		return tally__window_due(now, q->c[0].window_end) ||
		       tally__window_due(now, q->c[1].window_end);
	}
}

TALLY_API int
tally_sweep(tally_store *s, tally_roll_fn *cb, void *ctx, size_t *rolled)
{
	struct tally__thread *t;
	ck_hs_iterator_t it = CK_HS_ITERATOR_INITIALIZER;
	void *next[2] = {NULL, NULL};
	size_t count = 0;
	unsigned gen;
	int64_t now;
	void *obj;
	int rc;

	if (rolled != NULL)
		*rolled = 0;
	if (s == NULL)
		return TALLY_EINVAL;
	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	now = tally__now(s);

	tally__section_begin(t);
	gen = tally__load_uint(&s->map_gen);
	while (ck_hs_next_spmc(&s->hs, &it, &obj)) {
		struct tally__record *r = obj;
		struct tally__args args;
		struct tally__rolls rolls;
		enum tally__obj_type type;
		bool installed;
		uint64_t version;
		char key[TALLY_KEY_MAX + 1];
		size_t key_len;
		unsigned kind;
		void *snap;

		rolls.n = 0;
		tally__tsan_acquire(r);
		snap = tally__snap_load(&r->snap);
		if (snap == &s->tombstone || !due(r, snap, now))
			continue;
		type = tally__snap_type(r->kind);
		if (tally__reserve(t, 1) != TALLY_OK ||
		    (next[type] == NULL &&
		     (next[type] = tally__snap_alloc(t, type)) == NULL)) {
			rc = TALLY_ENOMEM;
			break;
		}
		memset(&args, 0, sizeof args);
		args.op = TALLY__OP_ROLL;
		args.now = now;
		(void)tally__cas_loop(s, t, &r, NULL, r->kind, &args,
				      next[type], &rolls, &installed, &version);
		if (!installed)
			continue;
		next[type] = NULL;
		count += rolls.n;
		/* r may be freed once the section ends: copy what the
		 * report needs. */
		kind = r->kind;
		key_len = r->key_len;
		memcpy(key, r->key, key_len + 1);

		tally__section_end(t);
		tally__report(s, key, key_len, kind, TALLY_ROLL_SWEEP, &rolls,
			      version, cb, ctx);
		tally__maintain(t);
		tally__section_begin(t);
		if (tally__load_uint(&s->map_gen) != gen) {
			gen = tally__load_uint(&s->map_gen);
			ck_hs_iterator_init(&it);
		}
	}
	tally__section_end(t);

	for (int i = 0; i < 2; i++)
		if (next[i] != NULL)
			tally__snap_free(t, next[i], (enum tally__obj_type)i);
	tally__maintain(t);
	if (rolled != NULL)
		*rolled = count;
	return rc;
}
