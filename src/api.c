/*
 * The public calls of both kinds: argument checks, then the engine. Each
 * hot call (bump, try_consume, reset, check, get) has one body per kind
 * here, into which the CAS loop of engine.h is inlined with the call's
 * operation and the kind's quick path as constants, so the common case
 * makes no indirect call; both public forms of the call (NUL-terminated
 * key and _n) jump to it.
 *
 * Order of the checks, the same for every call: the store, the structs
 * (sizes, config contents) and the call's own arguments, then the key;
 * all before anything else, so bad input changes nothing.
 */
#include <string.h>

#include "budget.h"
#include "engine.h"
#include "ratelimit.h"

/* key_len TALLY__KEY_NUL: key is NUL-terminated (measured here). */
#define TALLY__KEY_NUL SIZE_MAX

/* The _n forms' length: SIZE_MAX must stay "too long". */
static inline size_t
n_len(size_t key_len)
{
	return key_len == TALLY__KEY_NUL ? TALLY_KEY_MAX + 1 : key_len;
}

static inline int
key_in(const char *key, size_t *key_len)
{
	if (*key_len == TALLY__KEY_NUL)
		return tally__key_check(key, key_len);
	return tally__key_check_n(key, *key_len);
}

/* A view's size: NULL is fine where allowed, else at least the first
 * released layout. (Every released layout is the current one so far; a
 * later layout adds the copy of older ones here.) */
static inline bool
view_ok(const struct tally__kind *k, const void *view, bool may_be_null)
{
	size_t size;

	if (view == NULL)
		return may_be_null;
	memcpy(&size, view, sizeof size);
	return size >= k->view_v1;
}

/* Copies a config of the caller's layout into a full-size one (fields
 * past its size keep the defaults of `full`), or TALLY_EINVAL. */
static int
config_in(const struct tally__kind *k, const void *config, void *full)
{
	size_t size;

	if (config == NULL)
		return TALLY_EINVAL;
	memcpy(&size, config, sizeof size);
	if (size < k->config_v1)
		return TALLY_EINVAL;
	memcpy(full, config, size < k->config_size ? size : k->config_size);
	memcpy(full, &k->config_size, sizeof(size_t));
	return TALLY_OK;
}

static int
upsert(tally_store *store, const char *key, size_t key_len,
       const struct tally__kind *k, const void *config, void *full, void *view)
{
	struct tally__op op;
	int rc;

	if (store == NULL)
		return TALLY_EINVAL;
	if ((rc = config_in(k, config, full)) != TALLY_OK)
		return rc;
	if (!view_ok(k, view, true))
		return TALLY_EINVAL;
	if ((rc = k->validate(full)) != TALLY_OK)
		return rc;
	if ((rc = key_in(key, &key_len)) != TALLY_OK)
		return rc;
	tally__op_init(&op, store, key, key_len, k, TALLY__OP_UPSERT, view);
	op.args.config = full;
	return tally__upsert(&op);
}

static int
remove_key(tally_store *store, const char *key, size_t key_len,
	   const struct tally__kind *k, void *view)
{
	struct tally__op op;
	int rc;

	if (store == NULL || !view_ok(k, view, true))
		return TALLY_EINVAL;
	if ((rc = key_in(key, &key_len)) != TALLY_OK)
		return rc;
	tally__op_init(&op, store, key, key_len, k, TALLY__OP_GET, view);
	return tally__remove(&op);
}

/* ------------------------------------------------------------------------ */
/* Budgets                                                                  */
/* ------------------------------------------------------------------------ */

#define KB (&tally__kind_budget)

TALLY__HOT int
budget_op(tally_store *store, const char *key, size_t key_len,
	  enum tally__op_code code, int64_t amount, uint64_t observed,
	  tally_budget_view *view)
{
	struct tally__op op;
	int rc;

	if (store == NULL || !view_ok(KB, view, code != TALLY__OP_GET) ||
	    amount < 0)
		return TALLY_EINVAL;
	if ((rc = key_in(key, &key_len)) != TALLY_OK)
		return rc;
	tally__op_init(&op, store, key, key_len, KB, code, view);
	op.args.amount[0] = amount;
	op.args.observed_version = observed;
	if (code == TALLY__OP_GET || code == TALLY__OP_CHECK)
		return tally__read_inline(&op, code, tally__budget_quick);
	return tally__write_inline(&op, code, tally__budget_quick);
}

TALLY_API int
tally_budget_upsert_n(tally_store *store, const char *key, size_t key_len,
		      const tally_budget_config *config,
		      tally_budget_view *view)
{
	tally_budget_config full = TALLY_BUDGET_CONFIG_INIT;

	return upsert(store, key, n_len(key_len), KB, config, &full, view);
}

TALLY_API int
tally_budget_upsert(tally_store *store, const char *key,
		    const tally_budget_config *config, tally_budget_view *view)
{
	tally_budget_config full = TALLY_BUDGET_CONFIG_INIT;

	return upsert(store, key, TALLY__KEY_NUL, KB, config, &full, view);
}

/*
 * One body per call, with the engine inlined into it (budget_<name>); the
 * two public forms of the call jump to it: the NUL form with the key to
 * be measured, the _n form with its length.
 */
#define TALLY__BUDGET_CALL(name, code, amount, observed, params, args)         \
	static __attribute__((noinline)) int budget_##name(                    \
		tally_store *store, const char *key, size_t key_len, params)   \
	{                                                                      \
		return budget_op(store, key, key_len, code, amount, observed,  \
				 view);                                        \
	}                                                                      \
	TALLY_API int tally_budget_##name##_n(                                 \
		tally_store *store, const char *key, size_t key_len, params)   \
	{                                                                      \
		return budget_##name(store, key, n_len(key_len), args);        \
	}                                                                      \
	TALLY_API int tally_budget_##name(tally_store *store, const char *key, \
					  params)                              \
	{                                                                      \
		return budget_##name(store, key, TALLY__KEY_NUL, args);        \
	}

#define TALLY__P(...) __VA_ARGS__

TALLY__BUDGET_CALL(get, TALLY__OP_GET, 0, 0, tally_budget_view *view, view)
TALLY__BUDGET_CALL(check, TALLY__OP_CHECK, 0, 0, tally_budget_view *view, view)
TALLY__BUDGET_CALL(bump, TALLY__OP_BUMP, amount, 0,
		   TALLY__P(int64_t amount, tally_budget_view *view),
		   TALLY__P(amount, view))
TALLY__BUDGET_CALL(try_consume, TALLY__OP_TRY, amount, 0,
		   TALLY__P(int64_t amount, tally_budget_view *view),
		   TALLY__P(amount, view))
TALLY__BUDGET_CALL(reset, TALLY__OP_RESET, 0, observed_version,
		   TALLY__P(uint64_t observed_version, tally_budget_view *view),
		   TALLY__P(observed_version, view))

TALLY_API int
tally_budget_remove_n(tally_store *store, const char *key, size_t key_len,
		      tally_budget_view *view)
{
	return remove_key(store, key, n_len(key_len), KB, view);
}

TALLY_API int
tally_budget_remove(tally_store *store, const char *key,
		    tally_budget_view *view)
{
	return remove_key(store, key, TALLY__KEY_NUL, KB, view);
}

/* ------------------------------------------------------------------------ */
/* Rate limits                                                              */
/* ------------------------------------------------------------------------ */

#define KR (&tally__kind_ratelimit)

struct rl_args {
	int64_t tokens, requests;
	uint64_t observed;
	unsigned counters;
	unsigned *mask_out; /* limited or reset */
};

TALLY__HOT int
rl_op(tally_store *store, const char *key, size_t key_len,
      enum tally__op_code code, const struct rl_args *ra,
      tally_ratelimit_view *view)
{
	struct tally__op op;
	int rc;

	if (store == NULL || !view_ok(KR, view, code != TALLY__OP_GET) ||
	    ra->tokens < 0 || ra->requests < 0)
		return TALLY_EINVAL;
	if (code == TALLY__OP_RESET &&
	    ((ra->counters & TALLY_COUNTER_BOTH) == 0 ||
	     (ra->counters & ~(TALLY_COUNTER_BOTH | TALLY_RESET_DUE_ONLY)) !=
		     0))
		return TALLY_EINVAL;
	if ((rc = key_in(key, &key_len)) != TALLY_OK)
		return rc;
	tally__op_init(&op, store, key, key_len, KR, code, view);
	op.args.amount[0] = ra->tokens;
	op.args.amount[1] = ra->requests;
	op.args.observed_version = ra->observed;
	op.args.counters = ra->counters;
	if (code == TALLY__OP_GET || code == TALLY__OP_CHECK)
		rc = tally__read_inline(&op, code, tally__rl_quick);
	else
		rc = tally__write_inline(&op, code, tally__rl_quick);
	if (ra->mask_out != NULL && rc >= 0)
		*ra->mask_out = op.args.out_mask;
	return rc;
}

TALLY_API int
tally_ratelimit_upsert_n(tally_store *store, const char *key, size_t key_len,
			 const tally_ratelimit_config *config,
			 tally_ratelimit_view *view)
{
	tally_ratelimit_config full = TALLY_RATELIMIT_CONFIG_INIT;

	return upsert(store, key, n_len(key_len), KR, config, &full, view);
}

TALLY_API int
tally_ratelimit_upsert(tally_store *store, const char *key,
		       const tally_ratelimit_config *config,
		       tally_ratelimit_view *view)
{
	tally_ratelimit_config full = TALLY_RATELIMIT_CONFIG_INIT;

	return upsert(store, key, TALLY__KEY_NUL, KR, config, &full, view);
}

#define TALLY__RL_CALL(name, code, params, args, ...)                          \
	static __attribute__((noinline)) int rl_##name(                        \
		tally_store *store, const char *key, size_t key_len, params)   \
	{                                                                      \
		struct rl_args ra = {__VA_ARGS__};                             \
		return rl_op(store, key, key_len, code, &ra, view);            \
	}                                                                      \
	TALLY_API int tally_ratelimit_##name##_n(                              \
		tally_store *store, const char *key, size_t key_len, params)   \
	{                                                                      \
		return rl_##name(store, key, n_len(key_len), args);            \
	}                                                                      \
	TALLY_API int tally_ratelimit_##name(tally_store *store,               \
					     const char *key, params)          \
	{                                                                      \
		return rl_##name(store, key, TALLY__KEY_NUL, args);            \
	}

TALLY__RL_CALL(get, TALLY__OP_GET, tally_ratelimit_view *view, view, 0, 0, 0, 0,
	       NULL)
TALLY__RL_CALL(check, TALLY__OP_CHECK,
	       TALLY__P(unsigned *limited, tally_ratelimit_view *view),
	       TALLY__P(limited, view), 0, 0, 0, 0, limited)
TALLY__RL_CALL(bump, TALLY__OP_BUMP,
	       TALLY__P(int64_t tokens, int64_t requests,
			tally_ratelimit_view *view),
	       TALLY__P(tokens, requests, view), tokens, requests, 0, 0, NULL)
TALLY__RL_CALL(try_consume, TALLY__OP_TRY,
	       TALLY__P(int64_t tokens, int64_t requests, unsigned *limited,
			tally_ratelimit_view *view),
	       TALLY__P(tokens, requests, limited, view), tokens, requests, 0,
	       0, limited)
TALLY__RL_CALL(reset, TALLY__OP_RESET,
	       TALLY__P(uint64_t observed_version, unsigned counters,
			unsigned *reset, tally_ratelimit_view *view),
	       TALLY__P(observed_version, counters, reset, view), 0, 0,
	       observed_version, counters, reset)

TALLY_API int
tally_ratelimit_remove_n(tally_store *store, const char *key, size_t key_len,
			 tally_ratelimit_view *view)
{
	return remove_key(store, key, n_len(key_len), KR, view);
}

TALLY_API int
tally_ratelimit_remove(tally_store *store, const char *key,
		       tally_ratelimit_view *view)
{
	return remove_key(store, key, TALLY__KEY_NUL, KR, view);
}
