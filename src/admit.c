/*
 * Admission: several limits in one call (tally_admit), and the settlement
 * of holds (tally_settle, tally_release, tally_settle_partial).
 *
 * Every change is one CAS on one record through the engine's loop, with a
 * pure transition of the record's kind (PEEK, HOLD, SETTLE, PARTIAL), so
 * per record everything is linearizable at its CAS, as every other write.
 * Across records an admission is:
 *   1. a read-only pass (PEEK) over every limit, which answers the common
 *      refusal without writing anything. When every limit fits it needs
 *      no report (pass 2's replace them), so each kind answers from the
 *      record's snapshot without a copy (`fits`); a refusal, a missing
 *      record or a window or slot that may be due runs the full pass,
 *      whose reports are the decision;
 *   2. holds taken one CAS per record in the fixed acquisition order (key
 *      hash, then kind, length, bytes): two admissions that share limits
 *      take them in the same order;
 *   3. on a refusal in pass 2 (another call took the room after pass 1),
 *      the holds already taken are released in reverse order, each with a
 *      settle of 0 on its own slot: holds are apart from usage, so undoing
 *      one never touches `used` and cannot land in another window.
 * Mode CONSUME holds, then settles each hold with its estimate, in the same
 * section: a refusal undoes holds, never usage.
 *
 * Memory: every successor snapshot the call may install (two per record:
 * the hold, and its undo or settle) and the room to retire as many old
 * ones are taken before the epoch section, so nothing allocates inside it
 * and ENOMEM means that nothing changed. The unused ones go back to the
 * thread's cache.
 *
 * Handles. A hold names each record by its address, its key hash and its
 * incarnation. Settling finds the record through the map by identity (a
 * probe that matches only that address), never by dereferencing the
 * handle's pointer, so a stale or forged pointer is simply not found; the
 * incarnation then tells a record created again in a recycled cell. A
 * check word (a keyed hash of the handle under the store's seed) refuses
 * handles that were changed, zeroed or made by another store; it detects
 * mistakes, it is not a security boundary.
 */
#include <string.h>

#include "engine.h"
#include "hold.h"

struct item {
	const struct tally__kind *k;
	const char *key;
	size_t key_len;
	struct tally__probe probe;
	struct tally__record *r;
	unsigned idx; /* in the caller's array */
	bool shadow;
	bool held;   /* pass 2 installed its hold */
	bool undone; /* its hold was released again (a refusal) */
	int64_t amount[2];
	int64_t slot;
	void *next[2]; /* [0]: hold; [1]: undo or settle */
	struct tally__rolls notes[2];
	uint64_t version[2];
	uint64_t incarnation;
	/* Settle: TALLY_DECISION_GONE (nothing done), or the step's
	 * settle_flags and overdrafts. */
	unsigned settled_flags;
	int64_t overdraft[2];
};

/* An empty item, field by field (a memset of its size is a `rep stos`). */
static void
item_init(struct item *it)
{
	it->k = NULL;
	it->key = NULL;
	it->key_len = 0;
	it->r = NULL;
	it->idx = 0;
	it->shadow = it->held = it->undone = false;
	it->amount[0] = it->amount[1] = 0;
	it->slot = 0;
	it->next[0] = it->next[1] = NULL;
	tally__notes_clear(&it->notes[0]);
	tally__notes_clear(&it->notes[1]);
	it->version[0] = it->version[1] = 0;
	it->incarnation = 0;
	it->settled_flags = 0;
	it->overdraft[0] = it->overdraft[1] = 0;
}

/* Amounts of a charge or a cost as the kind's counters: budget [0];
 * rate limit [0] tokens, [1] requests. EINVAL for a negative amount or
 * one the kind does not use. */
static int
amounts_in(unsigned kind, int64_t amount, int64_t tokens, int64_t requests,
	   int64_t out[2])
{
	if (kind == TALLY_KIND_BUDGET) {
		if (amount < 0 || tokens != 0 || requests != 0)
			return TALLY_EINVAL;
		out[0] = amount;
		out[1] = 0;
		return TALLY_OK;
	}
	if (kind == TALLY_KIND_RATELIMIT) {
		if (amount != 0 || tokens < 0 || requests < 0)
			return TALLY_EINVAL;
		out[0] = tokens;
		out[1] = requests;
		return TALLY_OK;
	}
	return TALLY_EINVAL;
}

/* The acquisition order: key hash, then kind, length and bytes. */
static int
order(const struct item *a, const struct item *b)
{
	if (a->probe.hash != b->probe.hash)
		return a->probe.hash < b->probe.hash ? -1 : 1;
	if (a->probe.kind != b->probe.kind)
		return a->probe.kind < b->probe.kind ? -1 : 1;
	if (a->key_len != b->key_len)
		return a->key_len < b->key_len ? -1 : 1;
	return memcmp(a->key, b->key, a->key_len);
}

static void
decision_reset(tally_decision *d, int64_t now, unsigned n)
{
	d->now = now;
	d->refused = -1;
	d->n = n;
	d->mask = 0;
	d->flags = 0;
	/* No memset of the reports (a `rep stos` of a kilobyte): every call
	 * fills each of its n reports in full, or zeroes it (GONE). */
}

static void
decision_finish(tally_decision *d)
{
	d->flags = 0;
	for (unsigned i = 0; i < d->n; i++)
		d->flags |= d->limit[i].flags;
}

/* The args of one record's transition at now. */
static void
args_for(struct tally__args *a, const tally_store *s, enum tally__op_code code,
	 int64_t now, tally_limit_report *rep)
{
	tally__args_init(a, code, now, &s->hold_grain);
	a->report = rep;
	a->ttl = 0;
	a->slot = 0;
	a->held_amount[0] = a->held_amount[1] = 0;
	a->actual[0] = a->actual[1] = 0;
	a->moved[0] = a->moved[1] = 0;
}

/* Peeks one item: TALLY_OK, TALLY_LIMITED or TALLY_ENOENT; rep filled. */
static int
peek(tally_store *s, struct item *it, int64_t now, int64_t ttl,
     tally_limit_report *rep)
{
	uint64_t buf[TALLY__SNAP_MAX / sizeof(uint64_t)];
	struct tally__rolls notes;
	struct tally__args a;
	bool install;
	int rc;

	for (;;) {
		void *old;

		if (it->r == NULL)
			return TALLY_ENOENT;
		old = tally__ptr_load(&it->r->snap);
		if (old == &s->tombstone) {
			struct tally__record *again =
				tally__lookup(s, &it->probe);

			it->r = again != it->r ? again : NULL;
			continue;
		}
		args_for(&a, s, TALLY__OP_PEEK, now, rep);
		a.ttl = ttl; /* > 0: the hold's placement is tested too */
		a.amount[0] = it->amount[0];
		a.amount[1] = it->amount[1];
		a.shadow = it->shadow;
		tally__notes_clear(&notes);
		rc = it->k->step(old, buf, &a, &notes, &install);
		TALLY_ASSERT(!install);
		if (rep != NULL) {
			rep->version = tally__snap_version(buf);
			rep->incarnation = it->r->incarnation;
		}
		return rc;
	}
}

/* Pass 1 without reports: whether every item's record exists and fits
 * (its kind's `fits` says TALLY_OK). Looks the records up. */
static bool
quick_pass(tally_store *s, struct tally__thread *t, struct item **ord,
	   unsigned n, int64_t now, int64_t ttl)
{
	for (unsigned i = 0; i < n; i++) {
		struct item *it = ord[i];
		struct tally__args a;
		const void *old;

		it->r = tally__lookup_cached(s, t, &it->probe);
		if (it->r == NULL)
			return false;
		old = tally__ptr_load(&it->r->snap);
		if (old == &s->tombstone)
			return false;
		args_for(&a, s, TALLY__OP_PEEK, now, NULL);
		a.ttl = ttl;
		a.amount[0] = it->amount[0];
		a.amount[1] = it->amount[1];
		a.shadow = it->shadow;
		if (it->k->fits(old, &a) != TALLY_OK)
			return false;
	}
	return true;
}

/* One CAS loop on an item's record with args a; next is consumed if
 * installed (then *version is set). */
static int
write_item(tally_store *s, struct tally__thread *t, struct item *it,
	   struct tally__args *a, void **next, struct tally__rolls *notes,
	   uint64_t *version, const struct tally__probe *probe)
{
	bool installed = false;
	int rc;

	tally__notes_clear(notes);
	if (it->r == NULL)
		return TALLY_ENOENT;
	rc = tally__cas_loop(s, t, &it->r, probe, it->k, a, *next, notes,
			     &installed, version);
	if (installed)
		*next = NULL;
	else
		tally__notes_clear(notes);
	return rc;
}

/* Releases, in reverse order, the holds that items[0 .. upto-1] took. */
static void
undo_holds(tally_store *s, struct tally__thread *t, struct item **ord,
	   unsigned upto, int64_t now)
{
	for (unsigned j = upto; j > 0; j--) {
		struct item *it = ord[j - 1];
		struct tally__args a;
		int rc;

		if (!it->held)
			continue;
		args_for(&a, s, TALLY__OP_SETTLE, now, NULL);
		a.slot = it->slot;
		a.held_amount[0] = it->amount[0];
		a.held_amount[1] = it->amount[1];
		rc = write_item(s, t, it, &a, &it->next[1], &it->notes[1],
				&it->version[1], NULL);
		/* Our own hold, taken a moment ago in this section: its slot
		 * is live (its deadline is ahead) unless the record was
		 * removed meanwhile, which took the hold with it. */
		TALLY_ASSERT(rc == TALLY_OK || rc == TALLY_ENOENT);
		(void)rc;
		it->undone = true;
		tally__stat_add(&t->st.compensations, 1);
	}
}

/* Reports the notes of every item after the section. */
static void
report_items(tally_store *s, struct item *items, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned w = 0; w < 2; w++)
			if (tally__notes_any(&items[i].notes[w]))
				tally__report(
					s, items[i].key, items[i].key_len,
					items[i].k->id, items[i].incarnation,
					TALLY_ROLL_INLINE, &items[i].notes[w],
					items[i].version[w], NULL, NULL);
}

static void
free_items(struct tally__thread *t, struct item *items, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned w = 0; w < 2; w++)
			if (items[i].next[w] != NULL) {
				tally__snap_free(t, items[i].next[w],
						 items[i].k->id);
				items[i].next[w] = NULL;
			}
}

/* The check word of a hold: keyed hashes of everything but its size and
 * itself, with no copy: of its head (store_id .. state) xor of its n
 * parts, so that a settle, which changes only the state, updates it from
 * the head alone (see the end of settle). */
static uint64_t
hold_head_word(const tally_store *s, const tally_hold *h)
{
	size_t head =
		offsetof(tally_hold, check) - offsetof(tally_hold, store_id);

	return tally__hash(&h->store_id, head,
			   s->seed ^ UINT64_C(0x9e3779b97f4a7c15));
}

static uint64_t
hold_check(const tally_store *s, const tally_hold *h)
{
	unsigned n = h->n <= TALLY_ADMIT_MAX ? h->n : 0;

	return hold_head_word(s, h) ^
	       tally__hash_wide(h->part, n * sizeof(tally_hold_part),
				s->seed ^ UINT64_C(0xc2b2ae3d27d4eb4f));
}

static void
hold_fill(tally_store *s, tally_hold *h, const struct item *items, unsigned n,
	  int64_t deadline)
{
	h->store_id = s->store_id;
	h->deadline = deadline;
	h->n = n;
	h->state = TALLY_HOLD_LIVE;
	for (unsigned i = 0; i < n; i++) {
		const struct item *it = &items[i];
		tally_hold_part *p = &h->part[it->idx];

		p->record = (uint64_t)(uintptr_t)it->r;
		p->hash = (uint64_t)it->probe.hash;
		p->incarnation = it->incarnation;
		p->slot = it->slot;
		p->amount[0] = it->amount[0];
		p->amount[1] = it->amount[1];
		p->kind = it->k->id;
		p->flags = it->shadow ? TALLY_CHARGE_SHADOW : 0;
	}
	h->check = hold_check(s, h);
}

/* Validates the charges into items (in the caller's order). */
static int
items_in(const tally_charge *charges, unsigned n, struct item *items)
{
	int rc;

	for (unsigned i = 0; i < n; i++) {
		const tally_charge *c = &charges[i];
		struct item *it = &items[i];

		item_init(it);
		if ((c->flags & ~TALLY_CHARGE_SHADOW) != 0)
			return TALLY_EINVAL;
		if ((rc = amounts_in(c->kind, c->amount, c->tokens, c->requests,
				     it->amount)) != TALLY_OK)
			return rc;
		it->k = tally__kind_of(c->kind);
		it->idx = i;
		it->shadow = (c->flags & TALLY_CHARGE_SHADOW) != 0;
	}
	/* Keys last, as in every call. */
	for (unsigned i = 0; i < n; i++) {
		const tally_charge *c = &charges[i];
		size_t len = c->key_len;

		if (len == TALLY_KEY_STRLEN)
			rc = tally__key_check(c->key, &len);
		else
			rc = tally__key_check_n(c->key, len);
		if (rc != TALLY_OK)
			return rc;
		items[i].key = c->key;
		items[i].key_len = len;
	}
	return TALLY_OK;
}

/* Sorts pointers to items into the acquisition order (insertion sort: n
 * is at most TALLY_ADMIT_MAX); TALLY_EINVAL if two name one record. */
static int
sort_items(struct item *items, unsigned n, struct item **ord)
{
	for (unsigned i = 0; i < n; i++) {
		struct item *it = &items[i];
		unsigned j = i;

		while (j > 0 && order(ord[j - 1], it) > 0) {
			ord[j] = ord[j - 1];
			j--;
		}
		ord[j] = it;
	}
	for (unsigned i = 1; i < n; i++)
		if (order(ord[i - 1], ord[i]) == 0)
			return TALLY_EINVAL;
	return TALLY_OK;
}

/* Allocates the successors of every item (`per` each); nothing on error. */
static int
alloc_items(struct tally__thread *t, struct item *items, unsigned n,
	    unsigned per)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned w = 0; w < per; w++) {
			items[i].next[w] = tally__snap_alloc(t, items[i].k->id);
			if (items[i].next[w] == NULL) {
				free_items(t, items, n);
				return TALLY_ENOMEM;
			}
		}
	return TALLY_OK;
}

/* Whether any counter of a report says TOO_BIG while refusing. */
static bool
too_big(const tally_limit_report *rep)
{
	return (rep->flags & TALLY_DECISION_TOO_BIG) != 0;
}

TALLY_API int
tally_admit(tally_store *s, const tally_charge *charges, size_t count,
	    uint32_t mode, int64_t ttl, tally_hold *hold,
	    tally_decision *decision)
{
	struct item items[TALLY_ADMIT_MAX], *ord[TALLY_ADMIT_MAX];
	tally_decision local;
	tally_decision *d = decision != NULL ? decision : &local;
	struct tally__thread *t;
	unsigned n = (unsigned)count, refusing = 0, failed_at = 0;
	int64_t now;
	bool writes = mode != TALLY_ADMIT_PEEK, any_too_big = false;
	int rc, result = TALLY_OK, failed = TALLY_OK;

	/* The store, the structs, the call's arguments, then the keys. */
	if (s == NULL || charges == NULL || count == 0 ||
	    count > TALLY_ADMIT_MAX)
		return TALLY_EINVAL;
	if (decision != NULL && decision->size < sizeof(tally_decision))
		return TALLY_EINVAL;
	if (mode == TALLY_ADMIT_HOLD) {
		if (hold == NULL || hold->size < sizeof(tally_hold) ||
		    ttl <= 0 || ttl > s->hold_ttl_max)
			return TALLY_EINVAL;
	} else if (mode == TALLY_ADMIT_CONSUME || mode == TALLY_ADMIT_PEEK) {
		if (hold != NULL || ttl != 0)
			return TALLY_EINVAL;
	} else {
		return TALLY_EINVAL;
	}
	if (mode == TALLY_ADMIT_CONSUME)
		ttl = s->hold_ttl_max; /* held only inside this call */
	if ((rc = items_in(charges, n, items)) != TALLY_OK)
		return rc;
	for (unsigned i = 0; i < n; i++)
		tally__probe_init(&items[i].probe, s->seed, items[i].key,
				  items[i].key_len, items[i].k->id);
	if ((rc = sort_items(items, n, ord)) != TALLY_OK)
		return rc;

	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	if (writes) {
		if ((rc = tally__reserve(t, 2 * n)) != TALLY_OK)
			return rc;
		if ((rc = alloc_items(t, items, n, 2)) != TALLY_OK)
			return rc;
	}
	now = tally__now(s);
	decision_reset(d, now, n);

	tally__section_begin(t);
	/* Pass 1 without reports, where pass 2's replace them: every limit
	 * answered from its snapshot, with no copy. Anything else (a limit
	 * that refuses, is missing or may be due) runs the full pass. */
	if (writes && quick_pass(s, t, ord, n, now, ttl))
		goto pass2;
	/* Pass 1: read only, every limit (the mask names them all). */
	for (unsigned i = 0; i < n; i++) {
		struct item *it = ord[i];
		tally_limit_report *rep = &d->limit[it->idx];

		it->r = tally__lookup_cached(s, t, &it->probe);
		rc = peek(s, it, now, ttl, rep);
		if (rc == TALLY_ENOENT) {
			memset(rep, 0, sizeof *rep);
			rep->flags = TALLY_DECISION_GONE;
			if (result != TALLY_ENOENT ||
			    (int32_t)it->idx < d->refused)
				d->refused = (int32_t)it->idx;
			result = TALLY_ENOENT;
			continue;
		}
		if (rc == TALLY_LIMITED) {
			d->mask |= 1u << it->idx;
			any_too_big |= too_big(rep);
			refusing++;
		} else if (rc < 0) {
			/* A hold that would overflow (its report shows the
			 * state): nothing is written; a refusal, if any, is
			 * the answer. */
			if (failed == TALLY_OK)
				failed = rc;
		}
	}
	if (result == TALLY_OK && refusing == 0 && failed != TALLY_OK)
		result = failed;
	if (result == TALLY_OK && refusing != 0) {
		result = TALLY_LIMITED;
		for (unsigned i = 0; i < n; i++)
			if (d->mask & (1u << i)) {
				d->refused = (int32_t)i;
				break;
			}
	}
	if (result != TALLY_OK || !writes)
		goto out_section;

pass2:
	/* Pass 2: hold in the acquisition order; undo on a refusal. */
	for (unsigned i = 0; i < n; i++) {
		struct item *it = ord[i];
		struct tally__args a;

		/* No report when nobody reads it (a shadow's flags are
		 * counted in the stats); the flags the stats read are then
		 * 0 (pass 1 may have written no report either). */
		bool reported = decision != NULL || it->shadow;

		if (!reported)
			d->limit[it->idx].flags = 0;
		args_for(&a, s, TALLY__OP_HOLD, now,
			 reported ? &d->limit[it->idx] : NULL);
		a.ttl = ttl;
		a.amount[0] = it->amount[0];
		a.amount[1] = it->amount[1];
		a.shadow = it->shadow;
		rc = write_item(s, t, it, &a, &it->next[0], &it->notes[0],
				&it->version[0], &it->probe);
		if (rc == TALLY_OK) {
			it->held = true;
			it->slot = a.slot;
			it->incarnation = it->r->incarnation;
			d->limit[it->idx].version = it->version[0];
			d->limit[it->idx].incarnation = it->incarnation;
			continue;
		}
		result = rc;
		failed_at = i;
		if (rc == TALLY_ENOENT) {
			memset(&d->limit[it->idx], 0, sizeof d->limit[0]);
			d->limit[it->idx].flags = TALLY_DECISION_GONE;
		} else if (it->r != NULL) {
			/* Not installed: the successor is still ours, a copy
			 * of the snapshot the refusal saw, version included. */
			d->limit[it->idx].version =
				tally__snap_version(it->next[0]);
			d->limit[it->idx].incarnation = it->r->incarnation;
		}
		d->refused = (int32_t)it->idx;
		d->mask = rc == TALLY_LIMITED ? 1u << it->idx : 0;
		break;
	}
	if (result != TALLY_OK) {
		undo_holds(s, t, ord, failed_at, now);
		if (result == TALLY_LIMITED) {
			/* The mask: what would refuse now that ours are gone. */
			for (unsigned i = 0; i < n; i++) {
				struct item *it = ord[i];
				tally_limit_report rep;

				if (i == failed_at)
					continue;
				memset(&rep, 0, sizeof rep);
				rc = peek(s, it, now, 0, &rep);
				if (rc == TALLY_LIMITED)
					d->mask |= 1u << it->idx;
				else if (rc == TALLY_ENOENT)
					rep.flags = TALLY_DECISION_GONE;
				d->limit[it->idx] = rep;
			}
			if (d->mask & ((1u << d->refused) - 1)) {
				for (unsigned i = 0; i < n; i++)
					if (d->mask & (1u << i)) {
						d->refused = (int32_t)i;
						break;
					}
			}
		}
		goto out_section;
	}

	if (mode == TALLY_ADMIT_CONSUME) {
		/* Turn each hold into usage: a settle of its estimate. */
		for (unsigned i = 0; i < n; i++) {
			struct item *it = ord[i];
			tally_limit_report *rep = &d->limit[it->idx];
			unsigned shadow[2];
			struct tally__args a;

			/* The settle's report replaces the hold's: keep what
			 * the hold said of a shadow charge (only a shadow
			 * charge or a caller's decision has a hold report). */
			for (unsigned c = 0; c < 2; c++)
				shadow[c] =
					decision != NULL || it->shadow
						? rep->c[c].flags &
							  TALLY_DECISION_SHADOW_WOULD_DENY
						: 0;
			args_for(&a, s, TALLY__OP_SETTLE, now, rep);
			a.slot = it->slot;
			a.held_amount[0] = a.actual[0] = it->amount[0];
			a.held_amount[1] = a.actual[1] = it->amount[1];
			rc = write_item(s, t, it, &a, &it->next[1],
					&it->notes[1], &it->version[1], NULL);
			if (rc == TALLY_OK)
				rep->version = it->version[1];
			else
				rep->flags |= TALLY_DECISION_GONE;
			for (unsigned c = 0; c < 2; c++) {
				rep->c[c].flags |= shadow[c];
				rep->flags |= shadow[c];
			}
			/* A settle of a live hold taken in this call: only a
			 * concurrent remove can stop it (the record's usage
			 * went with the record). */
			TALLY_ASSERT(rc == TALLY_OK || rc == TALLY_ENOENT);
		}
	}

out_section:
	tally__section_end(t);

	report_items(s, items, n);
	if (writes)
		free_items(t, items, n);
	decision_finish(d);
	switch (result) {
	case TALLY_OK:
		if (writes) {
			tally__stat_add(&t->st.admitted, 1);
			if (mode == TALLY_ADMIT_HOLD)
				tally__stat_add(&t->st.holds, n);
			if (d->flags & TALLY_DECISION_SHADOW_WOULD_DENY)
				for (unsigned i = 0; i < n; i++)
					if (d->limit[i].flags &
					    TALLY_DECISION_SHADOW_WOULD_DENY)
						tally__stat_add(
							&t->st.shadow_would_deny,
							1);
		}
		break;
	case TALLY_LIMITED:
		if (!writes)
			break;
		if (refusing == 0)
			tally__stat_add(&t->st.refused_race, 1);
		else if (any_too_big)
			tally__stat_add(&t->st.refused_too_big, 1);
		else
			tally__stat_add(&t->st.refused_limit, 1);
		break;
	case TALLY_ENOENT:
		if (writes)
			tally__stat_add(&t->st.refused_missing, 1);
		break;
	default:
		break;
	}
	if (result < 0 && result != TALLY_ENOENT) {
		d->n = 0;
		d->refused = -1;
		d->mask = 0;
		d->flags = 0;
	}
	if (result == TALLY_OK && mode == TALLY_ADMIT_HOLD)
		hold_fill(s, hold, items, n, now + ttl);
	tally__maintain(t);
	return result;
}

/* ------------------------------------------------------------------------ */
/* Settlement                                                               */
/* ------------------------------------------------------------------------ */

/* Checks a hold handle: TALLY_OK (live), TALLY_ESETTLED or TALLY_EINVAL. */
static int
hold_in(const tally_store *s, const tally_hold *h)
{
	if (h->size < sizeof(tally_hold) || h->n == 0 || h->n > TALLY_ADMIT_MAX)
		return TALLY_EINVAL;
	if (h->store_id != s->store_id || h->check != hold_check(s, h))
		return TALLY_EINVAL;
	if (h->state == TALLY_HOLD_SETTLED)
		return TALLY_ESETTLED;
	return h->state == TALLY_HOLD_LIVE ? TALLY_OK : TALLY_EINVAL;
}

static int
settle(tally_store *s, tally_hold *h, const tally_cost *actual, size_t count,
       enum tally__op_code code, tally_decision *decision)
{
	struct item items[TALLY_ADMIT_MAX];
	char keys[TALLY_ADMIT_MAX][TALLY_KEY_MAX + 1];
	struct tally__thread *t;
	int64_t now, cost[TALLY_ADMIT_MAX][2];
	unsigned n;
	bool coarse;
	int rc;

	if (s == NULL || h == NULL)
		return TALLY_EINVAL;
	if (decision != NULL && decision->size < sizeof(tally_decision))
		return TALLY_EINVAL;
	if ((rc = hold_in(s, h)) != TALLY_OK)
		return rc;
	n = h->n;
	if (count != n || (actual == NULL && code != TALLY__OP_SETTLE))
		return TALLY_EINVAL;
	for (unsigned i = 0; i < n; i++) {
		if (actual == NULL) { /* release */
			cost[i][0] = cost[i][1] = 0;
			continue;
		}
		if ((rc = amounts_in(h->part[i].kind, actual[i].amount,
				     actual[i].tokens, actual[i].requests,
				     cost[i])) != TALLY_OK)
			return rc;
	}

	if ((rc = tally__thread_get(s, &t)) != TALLY_OK)
		return rc;
	if ((rc = tally__reserve(t, n)) != TALLY_OK)
		return rc;
	for (unsigned i = 0; i < n; i++) {
		item_init(&items[i]);
		items[i].k = tally__kind_of(h->part[i].kind);
		items[i].idx = i;
	}
	if ((rc = alloc_items(t, items, n, 1)) != TALLY_OK)
		return rc;
	/* Without a decision nothing reports the time, so a coarse reading
	 * serves where it can decide, as for a bump: a slot or window it
	 * cannot tell due or not makes the step read the exact clock. */
	coarse = decision == NULL && s->coarse != NULL;
	if (coarse) {
		struct tally__args c;

		tally__now_for(s, &c, TALLY__OP_BUMP);
		now = c.now;
	} else {
		now = tally__now(s);
	}
	if (decision != NULL)
		decision_reset(decision, now, n);

	tally__section_begin(t);
	for (unsigned i = 0; i < n; i++) {
		const tally_hold_part *p = &h->part[i];
		struct item *it = &items[i];
		/* No report when nobody reads it: the stats come from the
		 * step's settle_flags and overdrafts. */
		tally_limit_report *rep =
			decision != NULL ? &decision->limit[i] : NULL;
		struct tally__args a;

		it->r = tally__lookup_ptr_cached(s, t, (uintptr_t)p->record,
						 (unsigned long)p->hash);
		if (it->r != NULL && (it->r->kind != p->kind ||
				      it->r->incarnation != p->incarnation))
			it->r = NULL;
		args_for(&a, s, code, now, rep);
		a.now_coarse = coarse;
		a.slot = p->slot;
		a.held_amount[0] = p->amount[0];
		a.held_amount[1] = p->amount[1];
		a.actual[0] = cost[i][0];
		a.actual[1] = cost[i][1];
		rc = write_item(s, t, it, &a, &it->next[0], &it->notes[0],
				&it->version[0], NULL);
		if (rc != TALLY_OK) {
			/* Removed (ENOENT), or the hold is not on the record
			 * (ESETTLED): nothing done there. */
			if (rep != NULL) {
				memset(rep, 0, sizeof *rep);
				rep->kind = p->kind;
				rep->flags = TALLY_DECISION_GONE;
			}
			it->settled_flags = TALLY_DECISION_GONE;
			it->amount[0] = it->amount[1] = 0;
			continue;
		}
		it->incarnation = it->r->incarnation;
		if (rep != NULL) {
			rep->version = it->version[0];
			rep->incarnation = it->incarnation;
		}
		it->settled_flags = a.settle_flags;
		it->overdraft[0] = a.overdraft[0];
		it->overdraft[1] = a.overdraft[1];
		it->amount[0] = a.moved[0];
		it->amount[1] = a.moved[1];
		if (tally__notes_any(&it->notes[0])) {
			memcpy(keys[i], it->r->key, it->r->key_len + 1u);
			it->key = keys[i];
			it->key_len = it->r->key_len;
		}
	}
	tally__section_end(t);

	report_items(s, items, n);
	free_items(t, items, n);
	if (decision != NULL)
		decision_finish(decision);
	for (unsigned i = 0; i < n; i++) {
		if (items[i].settled_flags & TALLY_DECISION_LATE)
			tally__stat_add(&t->st.late_settles, 1);
		for (unsigned c = 0; c < 2; c++)
			if (items[i].overdraft[c] > 0)
				tally__stat_add(
					&t->st.overdraft_units,
					(uint64_t)items[i].overdraft[c]);
	}
	if (code == TALLY__OP_PARTIAL) {
		for (unsigned i = 0; i < n; i++)
			if (!(items[i].settled_flags &
			      (TALLY_DECISION_GONE | TALLY_DECISION_LATE))) {
				h->part[i].amount[0] -= items[i].amount[0];
				h->part[i].amount[1] -= items[i].amount[1];
			}
		tally__stat_add(&t->st.partials, 1);
		h->check = hold_check(s, h);
	} else {
		/* Only the head changes: swap its word in the check. */
		uint64_t was = hold_head_word(s, h);

		h->state = TALLY_HOLD_SETTLED;
		h->check ^= was ^ hold_head_word(s, h);
		tally__stat_add(
			actual == NULL ? &t->st.releases : &t->st.settles, 1);
	}
	tally__maintain(t);
	return TALLY_OK;
}

TALLY_API int
tally_settle(tally_store *store, tally_hold *hold, const tally_cost *actual,
	     size_t n, tally_decision *decision)
{
	if (actual == NULL)
		return TALLY_EINVAL;
	return settle(store, hold, actual, n, TALLY__OP_SETTLE, decision);
}

TALLY_API int
tally_release(tally_store *store, tally_hold *hold, tally_decision *decision)
{
	return settle(store, hold, NULL, hold != NULL ? hold->n : 0,
		      TALLY__OP_SETTLE, decision);
}

TALLY_API int
tally_settle_partial(tally_store *store, tally_hold *hold,
		     const tally_cost *amount, size_t n,
		     tally_decision *decision)
{
	if (amount == NULL)
		return TALLY_EINVAL;
	return settle(store, hold, amount, n, TALLY__OP_PARTIAL, decision);
}

_Static_assert(offsetof(tally_hold, check) - offsetof(tally_hold, store_id) ==
		       2 * sizeof(uint64_t) + 2 * sizeof(uint32_t),
	       "the hashed head of a hold has no padding");
_Static_assert(sizeof(tally_hold_part) == 7 * sizeof(uint64_t),
	       "a hold part has no padding");
