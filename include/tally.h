/*
 * tally: lock-free budget and rate-limit counters for request gateways.
 *
 * One header, one opaque handle (tally_store). A store maps keys to records
 * of two kinds, budgets and rate limits, each kind in its own key space.
 * Every record points to an immutable snapshot (config, usage, window,
 * version); every write builds the successor snapshot and installs it with
 * one compare-and-swap, so counters are exact under any concurrency and
 * readers never block.
 *
 * Results
 *   0 (TALLY_OK) is success. Positive results are normal outcomes that are
 *   not errors (TALLY_LIMITED, TALLY_CONFLICT, TALLY_CREATED). Negative
 *   results are errors; a call that returns an error changed nothing (the
 *   one exception, tally_sweep, says so). Test errors with `rc < 0`.
 *   tally_strerror() names every code. The values are tally's own and never
 *   change: TALLY_EINVAL, TALLY_ENOENT, TALLY_ENOMEM and TALLY_EOVERFLOW
 *   equal Linux's errno values negated, but they are not errno values (on
 *   other systems errno's differ): compare results with the TALLY_* names.
 *   The library never sets errno, never prints and never aborts.
 *
 * Amounts and time
 *   Amounts are int64_t in the caller's unit (micro-dollars, tokens,
 *   requests). Sums are exact; a sum that would overflow int64_t is
 *   TALLY_EOVERFLOW, never a wrap. Time is int64_t nanoseconds since the
 *   Unix epoch, UTC, read from the store's clock.
 *
 * Keys
 *   A key is a byte string of 1 to 255 bytes. Every call that names a key
 *   comes in two forms: `f(store, key, ...)` takes a NUL-terminated string
 *   (which therefore contains no NUL), `f_n(store, key, key_len, ...)` takes
 *   key_len bytes, any bytes, NUL included, and reads nothing past them.
 *   Both name the same record for the same bytes: "ab" and ("ab", 2) are
 *   one key. A NULL key is TALLY_EINVAL; an empty key or one longer than
 *   255 bytes is TALLY_EKEY. The library copies the key; the caller keeps
 *   ownership of its buffer.
 *
 * Structs and how they grow
 *   Every struct that a call reads or fills, and that may gain fields,
 *   begins with `size_t size`, which its _INIT macro sets to sizeof the
 *   struct as this header declares it (tally_store_options, the configs,
 *   the views, tally_stats; the library sets it in the tally_roll it
 *   passes). The size tells the library which released layout the caller
 *   was compiled with: it reads and writes only those bytes (fields a
 *   caller's older layout lacks take their defaults) and never writes the
 *   size field itself. A size smaller than the first released layout is
 *   TALLY_EINVAL. New fields are appended at the end; a struct nested by
 *   value (tally_period, tally_limit, tally_counter_view, tally_allocator,
 *   the config inside a view) changes only together with a new layout of
 *   every struct that holds it, which the library then fills in its old
 *   layout too. Fields are fixed-width integers (and bool), never enums.
 *   Always initialize with the _INIT macro; `= {0}` has size 0.
 *
 * Thread safety
 *   +----------------------------+-------------------------------------------+
 *   | call                       | may overlap with                          |
 *   +----------------------------+-------------------------------------------+
 *   | tally_store_create         | anything on other stores                  |
 *   | tally_store_destroy        | nothing on that store (see its comment)   |
 *   | every other tally_* call   | any call on the same store from any      |
 *   |                            | thread, except tally_store_destroy        |
 *   +----------------------------+-------------------------------------------+
 *   Each thread that touches a store is registered with it lazily on its
 *   first call (one allocation of about 129 KiB from the store's allocator,
 *   most of it a lookup cache) and parked for reuse by a later thread when
 *   it exits; the memory returns to the allocator at tally_store_destroy().
 *   Every write is linearizable at its compare-and-swap; every read at its
 *   single atomic load of the record's snapshot. Successful writes are
 *   sequentially consistent (full-barrier CAS).
 *
 * Callbacks (allocator, clocks, roll and expiry listeners)
 *   The allocator is never called inside the library's epoch sections, but
 *   it is called with the store's writer lock held (creating and removing
 *   records, growing the map): it must not call tally on the same store
 *   (that deadlocks). A slow allocator slows the calls that allocate (a
 *   thread's first call, a write that needs a new slab of snapshots) and,
 *   under the writer lock, other creations and removals; never other
 *   threads' reads and writes of existing records. The clocks may be
 *   read inside an epoch section: they must be fast, must not block and
 *   must not call tally (a clock that stalls delays the reclamation of
 *   every thread's garbage). The roll and expiry listeners run outside
 *   every lock and section and may call tally on the store.
 *
 * Ownership
 *   Views, stats, decisions, roll and expiry events are plain structs
 *   copied out of snapshots; they own nothing and stay valid as long as the
 *   caller keeps them, except the `key` pointer of a tally_roll or a
 *   tally_expiry, which is valid only during the callback. A hold handle
 *   (tally_hold) is plain data the caller owns: it holds no pointer the
 *   caller must free and may be kept, copied and settled from any thread.
 */
#ifndef TALLY_H
#define TALLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Version and export macros                                                */
/* ------------------------------------------------------------------------ */

#define TALLY_VERSION_MAJOR 0
#define TALLY_VERSION_MINOR 4
#define TALLY_VERSION_PATCH 0
/* 0xMMmmpp: comparable with >= at compile time. */
#define TALLY_VERSION_HEX                                                      \
	((TALLY_VERSION_MAJOR << 16) | (TALLY_VERSION_MINOR << 8) |            \
	 TALLY_VERSION_PATCH)

#if defined(TALLY_STATIC)
#define TALLY_API
#elif defined(__GNUC__)
#define TALLY_API __attribute__((visibility("default")))
#else
#define TALLY_API
#endif

#if defined(__GNUC__)
#define TALLY_NODISCARD __attribute__((warn_unused_result))
#else
#define TALLY_NODISCARD
#endif

/* Run-time version: the TALLY_VERSION_HEX the library was built with. */
TALLY_API unsigned tally_version(void);
/* Run-time version as "MAJOR.MINOR.PATCH"; a static string, never freed. */
TALLY_API const char *tally_version_string(void);

/* ------------------------------------------------------------------------ */
/* Result codes                                                             */
/* ------------------------------------------------------------------------ */

/* X(name, value, message): the single table behind the enum, the names and
 * tally_strerror(). Values never change once released. */
#define TALLY_RESULT_MAP(X)                                                    \
	X(OK, 0, "success")                                                    \
	X(LIMITED, 1, "over the limit: nothing was taken")                     \
	X(CONFLICT, 2, "the record changed since the observed version")        \
	X(CREATED, 3, "the record was created")                                \
	X(EINVAL, -22, "invalid argument")                                     \
	X(ENOENT, -2, "no such record")                                        \
	X(ENOMEM, -12, "out of memory")                                        \
	X(EOVERFLOW, -75, "the sum would overflow int64")                      \
	X(EKEY, -1001, "invalid key: must be 1 to 255 bytes")                  \
	X(EPERIOD, -1002, "invalid period")                                    \
	X(ESETTLED, -1003, "the hold was already settled or released")

typedef enum tally_result {
#define TALLY__RESULT_ENUM(name, value, msg) TALLY_##name = (value),
	TALLY_RESULT_MAP(TALLY__RESULT_ENUM)
#undef TALLY__RESULT_ENUM
} tally_result;

/* A static message for any value; "unknown result" for values not in the
 * table. Never NULL, never freed. */
TALLY_API const char *tally_strerror(int rc);
/* The code's name without prefix ("LIMITED", "EINVAL"), or NULL if unknown. */
TALLY_API const char *tally_result_name(int rc);

/* ------------------------------------------------------------------------ */
/* Periods                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum tally_period_unit {
	TALLY_PERIOD_NONE = 0,  /* no period: the window never resets */
	TALLY_PERIOD_FIXED = 1, /* count nanoseconds (s m h d, compounds) */
	TALLY_PERIOD_WEEK = 2, /* count weeks (w); Monday-aligned on the grid */
	TALLY_PERIOD_MONTH = 3 /* count calendar months (M; Q = 3, Y = 12) */
} tally_period_unit;

typedef struct tally_period {
	int64_t count; /* > 0 unless unit is TALLY_PERIOD_NONE (then 0) */
	int32_t unit;  /* a tally_period_unit */
} tally_period;

/* clang-format off */
#define TALLY_PERIOD_NONE_INIT {0, TALLY_PERIOD_NONE}
/* clang-format on */

/*
 * Parse text such as "30s", "5m", "1h", "1d", "1w", "1M", "1Q", "1Y",
 * "1h30m", "500ms", "250us", "10ns". Units: ns us ms s m h d w (fixed) and
 * M Q Y (calendar; a single term only: "1Y6M" and "1h1M" are errors). `m` is
 * minutes, `M` months. A lone "Nw" is a week period; w inside a compound
 * counts as 7 fixed days. The empty string and "none" parse to no period.
 * Returns TALLY_OK, TALLY_EINVAL (NULL argument) or TALLY_EPERIOD (zero,
 * negative, overflowing, unknown or malformed); *out is written only on
 * success.
 */
TALLY_API TALLY_NODISCARD int tally_period_parse(const char *text,
						 tally_period *out);

/*
 * Format a period canonically ("1h30m", "1w", "3M", "1Y", "none") into buf.
 * Returns the length of the full text (not counting the NUL), like snprintf;
 * the output is truncated (and still NUL-terminated when size > 0) if size is
 * too small. TALLY_PERIOD_FORMAT_MAX bytes always suffice. Returns
 * TALLY_EINVAL for a NULL period or a NULL buf with size > 0, TALLY_EPERIOD
 * for an invalid period. tally_period_parse() of the text gives back an equal
 * period.
 */
#define TALLY_PERIOD_FORMAT_MAX 64
TALLY_API int tally_period_format(const tally_period *period, char *buf,
				  size_t size);

/*
 * Windows. A record's windows form a lattice of boundaries, a pure function
 * of its period, anchor, utc_offset_minutes and calendar_aligned:
 *   - Local time is UTC + utc_offset_minutes (+60: local midnight is 23:00
 *     UTC the day before; -300: 05:00 UTC). |offset| <= TALLY_UTC_OFFSET_MAX.
 *   - Rolling (calendar_aligned false): boundaries at anchor + k * period
 *     for every integer k, also before the anchor (an anchor in the future
 *     has windows anchor - period, anchor - 2 * period, ... before it, and a
 *     record created before its anchor starts in one of those). Months
 *     (M Q Y) count from the anchor's local date and time: boundary k is
 *     the anchor moved by k * count local months, its day clamped to the
 *     last day of that local month, so a Jan 31 anchor gives Feb 28 (29),
 *     Mar 31, Apr 30 (the clamp never sticks).
 *   - Calendar aligned: on the local grid, counted from the epoch: "1d" at
 *     local midnight, "2d" every other midnight from 1970-01-01; "1h" at
 *     the top of the local hour (sub-day units at multiples of the period
 *     from local 1970-01-01 00:00); weeks ("1w", "2w") from Monday
 *     1970-01-05 00:00 local; months on the local 1st, 00:00, at month
 *     indexes since January 1970 that are multiples of the count ("1Q" =
 *     Jan/Apr/Jul/Oct, "6M" = Jan and Jul). The anchor is ignored.
 *   - A window is due when now has reached its end (the next boundary);
 *     rolling it zeroes usage and sets window_start to the boundary at or
 *     before now (never to now). Missed windows collapse into one roll.
 *     Time going backwards never rolls a window and never moves one back.
 *     A window whose end is INT64_MAX (no period, or no boundary before the
 *     end of int64 time, in 2262) never rolls.
 */

/* ------------------------------------------------------------------------ */
/* Store                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct tally_store tally_store;

/* Nanoseconds since the Unix epoch, UTC. Called once or twice per
 * operation, from any thread; it must be thread safe (see Callbacks). */
typedef int64_t tally_clock_fn(void *ctx);

/*
 * How far a store's coarse clock may lag its precise clock: a coarse
 * reading c is trusted to show that a window ending at e is not due when
 * c < e - TALLY_COARSE_MARGIN_NS, so the precise clock must never be a
 * margin or more ahead of the coarse one (the coarse one may run ahead).
 */
#define TALLY_COARSE_MARGIN_NS INT64_C(1000000000)

/* All memory of a store comes from here: the store, records, snapshots, the
 * map and its growth, per-thread records. malloc returns memory aligned for
 * any object (like malloc) or NULL; free receives the size that was asked
 * for. Both must be thread safe (see Callbacks). */
typedef struct tally_allocator {
	void *(*malloc)(void *ctx, size_t size);
	void (*free)(void *ctx, void *ptr, size_t size);
	void *ctx;
} tally_allocator;

typedef enum tally_kind {
	TALLY_KIND_BUDGET = 1,
	TALLY_KIND_RATELIMIT = 2
} tally_kind;

/* Counter identifiers; also bit masks for tally_ratelimit_reset(). */
#define TALLY_COUNTER_BUDGET 0u   /* the one counter of a budget */
#define TALLY_COUNTER_TOKENS 1u   /* rate limit: tokens */
#define TALLY_COUNTER_REQUESTS 2u /* rate limit: requests */
#define TALLY_COUNTER_BOTH (TALLY_COUNTER_TOKENS | TALLY_COUNTER_REQUESTS)

typedef enum tally_roll_cause {
	TALLY_ROLL_INLINE = 1, /* a write rolled a due window before applying */
	TALLY_ROLL_SWEEP = 2,  /* tally_sweep() rolled it */
	TALLY_ROLL_RESET = 3   /* an operator reset zeroed it */
} tally_roll_cause;

/*
 * Holds that expired (see Admission): the holds of the expiry slots that
 * one CAS dropped from one record's `held` (usually one slot). Holds are
 * kept as sums per slot, so an event covers `holds` holds together; amount
 * is their sum per counter (budget: amount[0]; rate limit: [0] tokens, [1]
 * requests). Reported exactly once, by the thread whose CAS dropped them
 * (any write of the record, or a sweep).
 */
typedef struct tally_expiry {
	size_t size;     /* sizeof(tally_expiry) of the library */
	const char *key; /* key_len bytes and a NUL; valid during the call */
	size_t key_len;
	uint32_t kind;  /* a tally_kind */
	uint32_t holds; /* how many holds expired */
	int64_t amount[2];
	int64_t slot_end;     /* ns: the boundary of the latest slot dropped */
	uint64_t version;     /* of the snapshot that dropped them */
	uint64_t incarnation; /* of the record */
} tally_expiry;

/* Called once per expiry event, by the thread whose CAS dropped the holds,
 * under the same rules as the roll listener. */
typedef void tally_expiry_fn(const tally_expiry *ev, void *ctx);

/* One window that closed. usage_before is what the window held when it was
 * closed; together with the usage a record holds now, the usage_before of
 * every roll accounts for every unit ever applied. */
typedef struct tally_roll {
	size_t size;     /* sizeof(tally_roll) of the library */
	const char *key; /* key_len bytes and a NUL; valid during the call */
	size_t key_len;
	uint32_t kind;    /* a tally_kind */
	uint32_t counter; /* TALLY_COUNTER_* */
	uint32_t cause;   /* a tally_roll_cause */
	int64_t usage_before;
	int64_t old_window_start;
	int64_t new_window_start;
	uint64_t version;     /* of the snapshot that installed the roll */
	uint64_t incarnation; /* of the record (see Versions) */
} tally_roll;

/*
 * Called once for every roll, by the thread whose CAS installed it, after
 * the CAS and outside any library-internal lock or section. It may call
 * tally functions on the store (not tally_store_destroy). It must be thread
 * safe.
 */
typedef void tally_roll_fn(const tally_roll *roll, void *ctx);

typedef struct tally_store_options {
	size_t size;             /* sizeof(tally_store_options); set by _INIT */
	size_t expected_records; /* pre-sizes the map; 0 = a small default */
	/* The precise clock. NULL: clock_gettime(CLOCK_REALTIME). */
	tally_clock_fn *clock;
	void *clock_ctx;
	tally_allocator allocator; /* malloc == NULL: malloc/free */
	tally_roll_fn *on_roll;    /* NULL = no listener */
	void *on_roll_ctx;
	uint64_t hash_seed; /* 0 = derived per store */
	/*
	 * A cheap clock that check, bump and try_consume read first, and
	 * tally_settle, tally_release and tally_settle_partial when given
	 * no decision (nothing then reports the time); they read the precise
	 * clock only within TALLY_COARSE_MARGIN_NS of a window's end or a
	 * hold slot's (see that macro for the contract). NULL: with the
	 * default precise clock, CLOCK_REALTIME_COARSE (when its resolution
	 * is 50 ms or finer); with an injected precise clock, none (every
	 * decision reads the precise clock). A gateway's cached time (an
	 * event loop's "now") is a natural coarse clock.
	 */
	tally_clock_fn *coarse_clock;
	void *coarse_clock_ctx;
	/*
	 * Holds (see Admission): the longest TTL a hold may ask for, in ns;
	 * 0 = TALLY_HOLD_TTL_MAX_DEFAULT. At most TALLY_HOLD_TTL_MAX_LIMIT. A
	 * hold leaves `held` at the first expiry boundary at or after its
	 * deadline: boundaries are hold_ttl_max / 3 apart (rounded up), so a
	 * hold expires at most that long after its deadline.
	 */
	int64_t hold_ttl_max;
	tally_expiry_fn *on_expire; /* NULL = no listener */
	void *on_expire_ctx;
} tally_store_options;

/* clang-format off */
#define TALLY_STORE_OPTIONS_INIT                                               \
	{sizeof(tally_store_options), 0, NULL, NULL, {NULL, NULL, NULL},      \
	 NULL, NULL, 0, NULL, NULL, 0, NULL, NULL}
/* clang-format on */

/*
 * Create a store. options may be NULL (all defaults); otherwise
 * options->size must be at least the size of the first released layout (up
 * to hash_seed; fields past options->size take their defaults). On success
 * *out owns the store until tally_store_destroy(). Each store takes one
 * pthread key of the process (PTHREAD_KEYS_MAX: 1,024 on glibc, at least
 * 128 by POSIX) until it is destroyed. Returns TALLY_OK, TALLY_EINVAL (NULL
 * out, bad size, allocator with only one of malloc/free, expected_records
 * over 2^29) or TALLY_ENOMEM (no memory, or no pthread key left).
 */
TALLY_API TALLY_NODISCARD int
tally_store_create(tally_store **out, const tally_store_options *options);

/*
 * Destroy a store and free all its memory, pending reclamation included.
 * NULL is a no-op. No other call on this store may run or start, and threads
 * that used it must not exit concurrently with this call (their exit hook
 * touches the store); threads that exit afterwards are fine. Never blocks.
 */
TALLY_API void tally_store_destroy(tally_store *store);

typedef struct tally_stats {
	size_t size;             /* sizeof(tally_stats); set by _INIT */
	uint64_t records;        /* budgets plus rate limits in the map */
	uint64_t threads;        /* per-thread records ever registered */
	uint64_t threads_active; /* of those, held by a live thread */
	uint64_t writes;         /* snapshots installed by CAS */
	uint64_t cas_retries;    /* failed CAS attempts that were retried */
	uint64_t rolls;          /* windows rolled (all causes) */
	uint64_t retired;        /* snapshots/records/maps handed to reclaim */
	uint64_t freed;          /* of those, already freed or recycled */
	uint64_t pending;        /* retired - freed */
	uint64_t peak_pending;   /* highest pending seen by any one thread */
	/* Admission (0.3). Calls of tally_admit, by outcome: */
	uint64_t admitted;        /* TALLY_OK (mode HOLD or CONSUME) */
	uint64_t refused_limit;   /* LIMITED: some limit has no room now */
	uint64_t refused_too_big; /* LIMITED: an amount over a max (never) */
	uint64_t refused_race;    /* LIMITED in the hold pass, after the
				     pre-check passed (a concurrent call
				     took the room) */
	uint64_t refused_missing; /* ENOENT: a limit's record is missing */
	uint64_t compensations;   /* holds undone because a later one refused */
	uint64_t holds;           /* per-record holds taken (and kept) */
	uint64_t settles;         /* tally_settle calls that succeeded */
	uint64_t releases;        /* tally_release calls that succeeded */
	uint64_t partials;        /* tally_settle_partial calls, succeeded */
	uint64_t late_settles;    /* per-record settles of an expired hold */
	uint64_t overdraft_units; /* units charged beyond what was held */
	uint64_t expired_holds;   /* holds dropped by expiry */
	uint64_t expired_units;   /* units they held (all counters summed) */
	uint64_t shadow_would_deny; /* shadow limits that would have refused */
} tally_stats;

/* clang-format off */
#define TALLY_STATS_INIT                                                       \
	{sizeof(tally_stats), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                    \
	 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
/* clang-format on */

/* Counters summed over all threads; each is exact for its own thread and the
 * sum is a moment's approximation while other threads run. Returns TALLY_OK
 * or TALLY_EINVAL (NULL argument, bad out->size). */
TALLY_API int tally_store_stats(tally_store *store, tally_stats *out);

/*
 * Roll every due window in the store, budgets and rate limits. Each roll is
 * a CAS on the snapshot this sweep observed: if another write got there
 * first (and so already rolled it), the sweep re-reads and rolls only what
 * is still due; concurrent sweepers produce exactly one roll per window.
 * Every record present for the whole sweep is visited once; one created
 * during it may be visited or not. The sweep walks the store in short
 * steps (a few hundred records each), so writers and reclamation never wait
 * for a whole walk. cb (may be NULL) hears every roll this sweep installed,
 * after the store's listener. *rolled (may be NULL) receives how many rolls
 * this sweep installed. Returns TALLY_OK, TALLY_EINVAL or TALLY_ENOMEM. The
 * one call whose error may follow changes: on TALLY_ENOMEM (a successor
 * snapshot could not be allocated) the rolls it installed before stay,
 * each reported and counted in *rolled, and the rest are left for the next
 * sweep (or the next write of each record, which rolls inline).
 */
TALLY_API int tally_sweep(tally_store *store, tally_roll_fn *cb, void *ctx,
			  size_t *rolled);

/*
 * Versions. Every successful write installs a snapshot whose version is the
 * previous one plus 1, and every snapshot names its record's incarnation.
 * The incarnation is a store-wide count of creations (1, 2, ...): a record
 * keeps it for life, and a key removed and created again gets a new one.
 * Versions never repeat for a key, with no limit: a record created anew
 * starts above every version that any removed record of the store reached,
 * so a version observed before a remove never matches after the key is
 * created again, and the calls that take an observed version (the resets)
 * need only the version. A write that would take a version past UINT64_MAX,
 * or a creation past UINT64_MAX - 1 incarnations, fails with
 * TALLY_EOVERFLOW (after 2^64 writes: never, in practice).
 */

/* ------------------------------------------------------------------------ */
/* Budgets                                                                  */
/* ------------------------------------------------------------------------ */

/* Default anchor: the record's creation time (kept by later upserts). */
#define TALLY_ANCHOR_DEFAULT INT64_MIN
/* utc_offset_minutes must lie within +-TALLY_UTC_OFFSET_MAX. */
#define TALLY_UTC_OFFSET_MAX (24 * 60 - 1)

typedef struct tally_budget_config {
	size_t size;         /* sizeof(tally_budget_config); set by _INIT */
	int64_t max_limit;   /* >= 0; usage >= max_limit blocks */
	tally_period period; /* TALLY_PERIOD_NONE: never resets (prepaid) */
	int64_t anchor;      /* ns, or TALLY_ANCHOR_DEFAULT */
	int32_t utc_offset_minutes; /* local time = UTC + this */
	bool calendar_aligned;      /* boundaries on the local grid */
} tally_budget_config;

/* clang-format off */
#define TALLY_BUDGET_CONFIG_INIT                                               \
	{sizeof(tally_budget_config), 0, TALLY_PERIOD_NONE_INIT,               \
	 TALLY_ANCHOR_DEFAULT, 0, false}
/* clang-format on */

typedef struct tally_budget_view {
	size_t size; /* sizeof(tally_budget_view); set by _INIT */
	tally_budget_config config; /* anchor is the effective anchor */
	int64_t usage;
	/* A lattice boundary (or where the window last rolled). No period:
	 * the anchor, and window_end is INT64_MAX. */
	int64_t window_start;
	int64_t window_end; /* next boundary; INT64_MAX: it never rolls */
	uint64_t version;
	uint64_t incarnation;
	/* 0.3: holds (see Admission). */
	int64_t held;   /* sum of the live holds' amounts */
	uint64_t holds; /* how many holds are live */
} tally_budget_view;

/* clang-format off */
#define TALLY_BUDGET_VIEW_INIT                                                 \
	{sizeof(tally_budget_view), TALLY_BUDGET_CONFIG_INIT, 0, 0, 0, 0, 0, 0, 0}
/* clang-format on */

/*
 * Every budget call below takes a view (may be NULL unless said otherwise)
 * whose size is set (TALLY_BUDGET_VIEW_INIT); a bad size is TALLY_EINVAL.
 * Every call may also return TALLY_EINVAL (NULL store or config, bad size),
 * TALLY_EKEY and TALLY_ENOMEM (the calling thread's first call could not
 * register it, or a snapshot could not be allocated); the lists below name
 * the other results.
 */

/*
 * Create the budget, or replace its config keeping usage and window_start,
 * in one CAS (the window end is re-derived under the new lattice; a window
 * that is due under it rolls at the next write). Returns TALLY_CREATED,
 * TALLY_OK (replaced), TALLY_EINVAL (also: negative max, offset out of
 * range), TALLY_EPERIOD, TALLY_EOVERFLOW (see Versions). view receives the
 * installed snapshot.
 */
TALLY_API TALLY_NODISCARD int
tally_budget_upsert(tally_store *store, const char *key,
		    const tally_budget_config *config, tally_budget_view *view);

/* A copy of the current snapshot, as stored (a due window is shown unrolled;
 * see tally_budget_check for the effective state). view must not be NULL.
 * Returns TALLY_OK or TALLY_ENOENT. */
TALLY_API TALLY_NODISCARD int
tally_budget_get(tally_store *store, const char *key, tally_budget_view *view);

/*
 * Add amount (>= 0) after the fact. Rolls a due window first, in the same
 * CAS; never refused for being over the limit. An amount of 0 with no window
 * due writes nothing (the version stays). Returns TALLY_OK, TALLY_ENOENT,
 * TALLY_EINVAL (also: amount < 0), TALLY_EOVERFLOW (the sum or the version).
 * view receives the installed snapshot.
 */
TALLY_API TALLY_NODISCARD int tally_budget_bump(tally_store *store,
						const char *key, int64_t amount,
						tally_budget_view *view);

/*
 * May a request pass now? TALLY_OK if usage + held < max_limit, TALLY_LIMITED
 * if not (max_limit 0 always blocks; held: the live holds, see Admission).
 * A due window counts as rolled (usage 0), an expired hold as dropped.
 * Reads only: no CAS, no roll. view receives the effective state. Returns
 * TALLY_OK, TALLY_LIMITED or TALLY_ENOENT.
 */
TALLY_API TALLY_NODISCARD int tally_budget_check(tally_store *store,
						 const char *key,
						 tally_budget_view *view);

/*
 * Take amount (>= 0) only if usage + held + amount <= max_limit (after rolling
 * a due window and dropping expired holds, in the same CAS). Otherwise take nothing, change nothing (not even
 * the due roll) and return TALLY_LIMITED; a sum beyond INT64_MAX is over any
 * max, so it is TALLY_LIMITED too, never TALLY_EOVERFLOW. An amount of 0
 * that fits with no window due writes nothing. Returns TALLY_OK,
 * TALLY_LIMITED, TALLY_ENOENT, TALLY_EINVAL (also: amount < 0),
 * TALLY_EOVERFLOW (the version only). view receives the installed snapshot
 * on OK, the effective state on LIMITED.
 */
TALLY_API TALLY_NODISCARD int tally_budget_try_consume(tally_store *store,
						       const char *key,
						       int64_t amount,
						       tally_budget_view *view);

/*
 * Operator reset: zero usage and set window_start to the window of now, only
 * if the record still holds the snapshot whose version is observed_version.
 * If the clock reads a time before window_start (it went back), the window
 * stays where it is and only usage is zeroed: a window never moves back.
 * Reports a TALLY_ROLL_RESET roll. Returns TALLY_OK, TALLY_CONFLICT (version
 * differs: nothing changed, and view receives the current snapshot, whose
 * version a retry may pass), TALLY_ENOENT, TALLY_EOVERFLOW (the version).
 */
TALLY_API TALLY_NODISCARD int tally_budget_reset(tally_store *store,
						 const char *key,
						 uint64_t observed_version,
						 tally_budget_view *view);

/* Delete the budget. view receives its last snapshot, so its final usage
 * can be persisted. Concurrent calls see it or get TALLY_ENOENT. Returns
 * TALLY_OK or TALLY_ENOENT. */
TALLY_API int tally_budget_remove(tally_store *store, const char *key,
				  tally_budget_view *view);

/* The same calls with a key of key_len bytes (see Keys). */
TALLY_API TALLY_NODISCARD int
tally_budget_upsert_n(tally_store *store, const char *key, size_t key_len,
		      const tally_budget_config *config,
		      tally_budget_view *view);
TALLY_API TALLY_NODISCARD int tally_budget_get_n(tally_store *store,
						 const char *key,
						 size_t key_len,
						 tally_budget_view *view);
TALLY_API TALLY_NODISCARD int
tally_budget_bump_n(tally_store *store, const char *key, size_t key_len,
		    int64_t amount, tally_budget_view *view);
TALLY_API TALLY_NODISCARD int tally_budget_check_n(tally_store *store,
						   const char *key,
						   size_t key_len,
						   tally_budget_view *view);
TALLY_API TALLY_NODISCARD int
tally_budget_try_consume_n(tally_store *store, const char *key, size_t key_len,
			   int64_t amount, tally_budget_view *view);
TALLY_API TALLY_NODISCARD int
tally_budget_reset_n(tally_store *store, const char *key, size_t key_len,
		     uint64_t observed_version, tally_budget_view *view);
TALLY_API int tally_budget_remove_n(tally_store *store, const char *key,
				    size_t key_len, tally_budget_view *view);

/* ------------------------------------------------------------------------ */
/* Rate limits                                                              */
/* ------------------------------------------------------------------------ */

typedef struct tally_limit {
	bool has_max;        /* false: unlimited (counted, never blocks) */
	int64_t max;         /* >= 0 when has_max; views show 0 without */
	tally_period period; /* required: FIXED, WEEK or MONTH */
} tally_limit;

/*
 * A counter's algorithm (tally_ratelimit_config.tokens_algorithm and
 * requests_algorithm, 0.4; a config of an older layout means FIXED).
 *
 * TALLY_ALGORITHM_FIXED: fixed windows on the record's lattice (ARCHITECTURE
 *   section 2): a request of n passes iff used + held + n <= max; the window
 *   roll zeroes used. Across a boundary up to 2 * max can pass within 2 ns.
 * TALLY_ALGORITHM_SLIDING: the sliding-window counter (Cloudflare's
 *   estimate) on the same lattice. With w the window length, e the time
 *   since the current window's start, cur its usage (the view's usage) and
 *   prev the usage of the window just before it (the view's *_previous; 0
 *   when that window was missed: nothing is re-anchored at now), a request
 *   of n passes iff
 *       prev * (w - e) + (cur + held + n) * w <= max * w,
 *   evaluated exactly (128-bit products). A roll into the next window makes
 *   prev the closed window's usage; a roll over two or more windows makes it
 *   0. Every w consecutive ns pass at most max + floor(max * (w - 2) / w)
 *   units (the estimate's own bound, reached only by a burst right before a
 *   boundary after an idle window), and the ns just before a boundary and
 *   the boundary itself together pass at most max (fixed windows: 2 * max).
 *   Windows must be of one length: a MONTH period is TALLY_EPERIOD; the
 *   window length and max are at most 2^62 (ns, units) and a counter's usage
 *   and held at most 2^62 - 1 (a charge beyond: TALLY_EOVERFLOW, or
 *   TALLY_DECISION_OVERFLOW on a settle, as past INT64_MAX for FIXED).
 *   Decisions read the precise clock (the estimate moves every ns); a bump
 *   or a settle without a decision may use the coarse one, as for FIXED.
 *   Reports: used is the estimate rounded up, ceil(prev * (w - e) / w) +
 *   cur, so that remaining = max - used - held (at least 0) is exactly the
 *   largest request that passes; window_start and window_end are the
 *   current window's; retry_after is exact (the estimate's closed form, and
 *   held dropping as holds expire); TALLY_DECISION_SLIDING is set.
 * Changing a counter's algorithm by upsert keeps its usage, held and
 * window; becoming SLIDING starts with prev = 0 (a fixed window keeps no
 * earlier usage), leaving SLIDING drops prev. A SLIDING counter keeps prev
 * across an upsert only if its window length stays and its window is still
 * a window of the new lattice; otherwise (a new period, anchor, UTC offset
 * or alignment) prev = 0 and its window becomes the new lattice's window
 * that holds its old start (its usage kept), so that every window is w
 * long. An operator reset of a SLIDING counter zeroes prev too.
 */
#define TALLY_ALGORITHM_FIXED 0u
#define TALLY_ALGORITHM_SLIDING 1u

typedef struct tally_ratelimit_config {
	size_t size; /* sizeof(tally_ratelimit_config); set by _INIT */
	tally_limit tokens;
	tally_limit requests;
	int64_t anchor;             /* ns, or TALLY_ANCHOR_DEFAULT */
	int32_t utc_offset_minutes; /* local time = UTC + this */
	bool calendar_aligned;      /* boundaries on the local grid */
	/* 0.4: TALLY_ALGORITHM_* per counter (another value: TALLY_EINVAL) */
	uint32_t tokens_algorithm;
	uint32_t requests_algorithm;
} tally_ratelimit_config;

/* clang-format off */
#define TALLY_RATELIMIT_CONFIG_INIT                                            \
	{sizeof(tally_ratelimit_config),                                       \
	 {false, 0, TALLY_PERIOD_NONE_INIT}, {false, 0, TALLY_PERIOD_NONE_INIT}, \
	 TALLY_ANCHOR_DEFAULT, 0, false, TALLY_ALGORITHM_FIXED,                 \
	 TALLY_ALGORITHM_FIXED}
/* clang-format on */

typedef struct tally_counter_view {
	int64_t usage;
	int64_t window_start;
	int64_t window_end;
} tally_counter_view;

typedef struct tally_ratelimit_view {
	size_t size; /* sizeof(tally_ratelimit_view); set by _INIT */
	tally_ratelimit_config config;
	tally_counter_view tokens;
	tally_counter_view requests;
	uint64_t version;
	uint64_t incarnation;
	/* 0.3: holds (see Admission), per counter, and how many are live. */
	int64_t tokens_held;
	int64_t requests_held;
	uint64_t holds;
	/* 0.4: a SLIDING counter's prev, the usage of the window before its
	 * current one (0 for FIXED). The 0.4 layout also grew `config` (its
	 * algorithms): a view of the 0.2 or 0.3 layout, by its size, is
	 * filled in that layout, with the config as those versions had it. */
	int64_t tokens_previous;
	int64_t requests_previous;
} tally_ratelimit_view;

/* clang-format off */
#define TALLY_RATELIMIT_VIEW_INIT                                              \
	{sizeof(tally_ratelimit_view), TALLY_RATELIMIT_CONFIG_INIT,            \
	 {0, 0, 0}, {0, 0, 0}, 0, 0, 0, 0, 0, 0, 0}
/* clang-format on */

/* The rate-limit calls follow the budget calls' conventions. */

/* As tally_budget_upsert. A counter with no period is TALLY_EPERIOD;
 * has_max with max < 0 is TALLY_EINVAL; so is an unknown algorithm. A
 * SLIDING counter with a MONTH period or a window over 2^62 ns is
 * TALLY_EPERIOD, with a max over 2^62 - 1 TALLY_EINVAL. An existing
 * counter that would become SLIDING with a usage or held over 2^62 - 1 is
 * TALLY_EOVERFLOW (nothing changes). */
TALLY_API TALLY_NODISCARD int
tally_ratelimit_upsert(tally_store *store, const char *key,
		       const tally_ratelimit_config *config,
		       tally_ratelimit_view *view);

/* As tally_budget_get. */
TALLY_API TALLY_NODISCARD int tally_ratelimit_get(tally_store *store,
						  const char *key,
						  tally_ratelimit_view *view);

/* Add tokens and requests (each >= 0) in one CAS, rolling each due counter
 * first. As tally_budget_bump otherwise; EOVERFLOW if either sum would
 * overflow (then neither is added). */
TALLY_API TALLY_NODISCARD int
tally_ratelimit_bump(tally_store *store, const char *key, int64_t tokens,
		     int64_t requests, tally_ratelimit_view *view);

/* TALLY_LIMITED if any counter with a max has usage + held >= max (a
 * sliding counter: a request of 1 would not pass its estimate; a due
 * counter counts as rolled, an expired hold as dropped). limited (may be NULL) receives the mask of blocking
 * counters (0 with TALLY_OK). Reads only. */
TALLY_API TALLY_NODISCARD int tally_ratelimit_check(tally_store *store,
						    const char *key,
						    unsigned *limited,
						    tally_ratelimit_view *view);

/*
 * Take tokens and requests only if both fit (usage + held + amount <= max for
 * each counter that has a max; a sliding counter: its estimate's test, see
 * TALLY_ALGORITHM_SLIDING); otherwise nothing and TALLY_LIMITED, with the
 * mask of counters that did not fit in *limited (may be NULL; 0 with
 * TALLY_OK). A sum beyond INT64_MAX does not fit a counter with a max
 * (TALLY_LIMITED); on a counter without a max it is TALLY_EOVERFLOW, unless
 * the other counter is LIMITED (then TALLY_LIMITED). Nothing is taken in
 * either case.
 */
TALLY_API TALLY_NODISCARD int
tally_ratelimit_try_consume(tally_store *store, const char *key, int64_t tokens,
			    int64_t requests, unsigned *limited,
			    tally_ratelimit_view *view);

/* Only reset counters whose window is due at the time of the reset. */
#define TALLY_RESET_DUE_ONLY 0x100u

/*
 * Operator reset of the counters in `counters` (a mask of TALLY_COUNTER_TOKENS
 * and TALLY_COUNTER_REQUESTS, optionally with TALLY_RESET_DUE_ONLY), only if
 * the record still holds version observed_version. Each reset counter gets
 * usage 0 (a sliding one prev 0 too) and the window of now (kept if the
 * clock went back, as for budgets); the others keep everything. *reset (may be NULL) receives the
 * mask of counters that were reset: 0 if none was due (then nothing changes
 * and the version stays) and 0 with TALLY_CONFLICT. Returns TALLY_OK,
 * TALLY_CONFLICT (view: the current snapshot), TALLY_ENOENT, TALLY_EINVAL
 * (also: empty or unknown mask), TALLY_EOVERFLOW (the version).
 */
TALLY_API TALLY_NODISCARD int
tally_ratelimit_reset(tally_store *store, const char *key,
		      uint64_t observed_version, unsigned counters,
		      unsigned *reset, tally_ratelimit_view *view);

/* As tally_budget_remove. */
TALLY_API int tally_ratelimit_remove(tally_store *store, const char *key,
				     tally_ratelimit_view *view);

/* The same calls with a key of key_len bytes (see Keys). */
TALLY_API TALLY_NODISCARD int
tally_ratelimit_upsert_n(tally_store *store, const char *key, size_t key_len,
			 const tally_ratelimit_config *config,
			 tally_ratelimit_view *view);
TALLY_API TALLY_NODISCARD int tally_ratelimit_get_n(tally_store *store,
						    const char *key,
						    size_t key_len,
						    tally_ratelimit_view *view);
TALLY_API TALLY_NODISCARD int
tally_ratelimit_bump_n(tally_store *store, const char *key, size_t key_len,
		       int64_t tokens, int64_t requests,
		       tally_ratelimit_view *view);
TALLY_API TALLY_NODISCARD int
tally_ratelimit_check_n(tally_store *store, const char *key, size_t key_len,
			unsigned *limited, tally_ratelimit_view *view);
TALLY_API TALLY_NODISCARD int
tally_ratelimit_try_consume_n(tally_store *store, const char *key,
			      size_t key_len, int64_t tokens, int64_t requests,
			      unsigned *limited, tally_ratelimit_view *view);
TALLY_API TALLY_NODISCARD int
tally_ratelimit_reset_n(tally_store *store, const char *key, size_t key_len,
			uint64_t observed_version, unsigned counters,
			unsigned *reset, tally_ratelimit_view *view);
TALLY_API int tally_ratelimit_remove_n(tally_store *store, const char *key,
				       size_t key_len,
				       tally_ratelimit_view *view);

/* ------------------------------------------------------------------------ */
/* Export: every record of a store, without stopping it (0.4)              */
/* ------------------------------------------------------------------------ */

/*
 * One record as an export saw it: its key, its kind and the view of one
 * snapshot (as stored, like tally_*_get: a due window is shown unrolled,
 * holds as held). The library fills it and sets size, as for tally_roll;
 * the key points to a copy (key_len bytes and a NUL) that lives until the
 * callback returns. Only the view of the record's kind is filled; the
 * other is all zero but its size.
 */
typedef struct tally_record {
	size_t size;
	uint32_t kind; /* TALLY_KIND_BUDGET or TALLY_KIND_RATELIMIT */
	const char *key;
	size_t key_len;
	tally_budget_view budget;       /* kind TALLY_KIND_BUDGET */
	tally_ratelimit_view ratelimit; /* kind TALLY_KIND_RATELIMIT */
} tally_record;

/* Return 0 to go on; anything else stops the export, which returns it. */
typedef int tally_record_fn(void *ctx, const tally_record *record);

/*
 * Where an export stands: plain data the caller owns, bound to one store
 * by its first call. Opaque but for `done`; a cursor that was changed, or
 * that belongs to another store, is TALLY_EINVAL. One cursor is used by
 * one call at a time. Initialize with TALLY_CURSOR_INIT.
 */
typedef struct tally_cursor {
	uint64_t store;
	uint64_t at[2];
	bool done; /* the walk has returned every record */
} tally_cursor;

#define TALLY_CURSOR_INIT                                                      \
	{                                                                      \
		0, {0, 0}, false                                               \
	}

/*
 * Hands the next records of a walk over the whole store (budgets and rate
 * limits) to fn, at most `max` of them (0: to the end), and moves the
 * cursor past each one fn was given. Call again with the same cursor until
 * cursor->done. Guarantees: every record that is live for the whole walk is
 * given once; one created or removed during it at most once; each record's
 * fields come from one snapshot (one atomic load: consistent, as a get);
 * no lock is taken, writers never wait, and no epoch section spans more
 * than one record (each looks at no more than a few hundred cells), so a
 * walk of any length holds reclamation back by one record at most. fn runs
 * outside the store's sections and may call the store (any call but
 * tally_store_destroy, writes and removes included). Records come in the
 * order of their cells, not of keys or kinds. Returns TALLY_OK (after max
 * records, or at the end: then cursor->done), fn's nonzero result (the
 * cursor is past the record fn was given), TALLY_EINVAL (store, cursor or
 * fn NULL, or a bad cursor: then nothing is given) or TALLY_ENOMEM (the
 * calling thread could not be registered).
 */
TALLY_API int tally_export(tally_store *store, tally_cursor *cursor, size_t max,
			   tally_record_fn *fn, void *ctx);

/* ------------------------------------------------------------------------ */
/* Admission: holds, several limits in one call, decisions                  */
/* ------------------------------------------------------------------------ */

/*
 * An LLM request's cost is known only after the response, and one request
 * touches several limits. tally_admit() takes an array of charges (a
 * budget or a rate limit, its key, an estimate) and holds every estimate
 * or none; tally_settle() later charges what the request really cost.
 *
 * Holds are apart from usage. Every counter keeps `used` (settled: the
 * views' usage) and `held` (estimates of requests in flight):
 *   - admission of an estimate e passes iff used + held + e <= max;
 *     tally_*_check blocks iff used + held >= max, and try_consume takes
 *     an amount only if used + held + amount <= max;
 *   - a window roll zeroes used and keeps held (requests in flight stay in
 *     flight), and so does an operator reset;
 *   - settle releases the hold and adds the actual amount to the window
 *     current at settle time, in one CAS per record; the actual may exceed
 *     the hold (an overdraft: charged in full, never refused, reported);
 *   - release is a settle of 0 (upstream error, cancel);
 *   - a partial charge (streaming) moves an amount from held to used and
 *     reports whether the limit is now reached;
 *   - every hold has a deadline (now + ttl, ttl at most the store's
 *     hold_ttl_max). Held amounts are kept as sums in 4 expiry slots per
 *     counter, so a hold costs no allocation and no registry: once the
 *     boundary of a hold's slot (its deadline rounded up to the store's
 *     slot grid, at most hold_ttl_max / 3 later) has passed, the hold no
 *     longer counts, and the next CAS on the record (any write, or a
 *     sweep) drops it and reports it to the expiry listener. A settle
 *     after that charges the actual in full, releases nothing and reports
 *     TALLY_DECISION_LATE: nothing is subtracted twice, nothing is lost.
 *   - a counter whose actual is always 0 limits requests in flight (a
 *     concurrency limit), and expiry heals its leaks.
 *
 * The handle (tally_hold) is plain data owned by the caller: no allocation,
 * it may be copied and settled from any thread, minutes later. It names
 * each record and its incarnation: after the record is removed (and maybe
 * created again) settling changes nothing there and reports
 * TALLY_DECISION_GONE. tally_settle() and tally_release() mark the handle
 * settled; settling or releasing it again is TALLY_ESETTLED and changes
 * nothing. (Two copies of one handle are two handles to the library: the
 * caller settles one of them. A settle that finds its slot holding less
 * than its amount, as a settled copy would, changes nothing there.) A
 * handle that is zeroed, changed, or from another store is TALLY_EINVAL.
 *
 * Several limits in one call (tally_admit): guarantees.
 *   1. Per-limit safety: no successful CAS makes used + held > max on a
 *      counter with a max, except by reported overdrafts and late settles
 *      (settles are never refused) and by shadow charges. Concurrency
 *      never over-admits.
 *   2. All or nothing: a call that returns anything but TALLY_OK has no
 *      net effect on any limit (holds it took on the way were undone).
 *   3. Transient effects: while a refused call runs, the holds it took
 *      before meeting the refusing limit are visible to other calls; they
 *      can cause extra refusals, never extra admissions. Counted in
 *      tally_stats.compensations (and refused_race).
 *   4. Linearizable per record (each hold, settle and partial charge is
 *      one CAS on its record), not across records.
 *   5. A fixed acquisition order: records are taken in the order of their
 *      key hash (then kind, length and bytes), whatever the order of the
 *      charges, so two calls never refuse each other by taking shared
 *      limits in opposite orders.
 *   6. The decision names the first refusing limit (the lowest index in
 *      the caller's array) and the mask of every limit that would refuse.
 *      A refused call charges nothing.
 *   A call first checks every limit without writing (so the common refusal
 *   takes no hold at all), then holds them in the fixed order, and on a
 *   refusal releases what it took, in reverse order.
 * A charge may be a shadow (TALLY_CHARGE_SHADOW): it is held or consumed
 * and reported like the others but never refuses (dark launch); when it
 * would have, its report says TALLY_DECISION_SHADOW_WOULD_DENY. Shadow
 * charges are exempt from guarantee 1.
 *
 * Two charges of one call that name the same record (same kind and key)
 * are TALLY_EINVAL: one charge per record, with the amounts summed by the
 * caller if that is what it means.
 */

/* The most charges one call takes. */
#define TALLY_ADMIT_MAX 16

/* tally_charge.key_len for a NUL-terminated key. */
#define TALLY_KEY_STRLEN SIZE_MAX

/* tally_charge.flags */
#define TALLY_CHARGE_SHADOW 0x1u /* charged and reported, never refuses */

/*
 * One limit of an admission: a record and the estimate to hold (or the
 * amount to consume, or to peek). Budgets use `amount`; rate limits
 * `tokens` and `requests` (each counter tested against its own max; a
 * counter without a max never refuses). The unused amounts must be 0.
 * This struct and tally_cost are elements of arrays: they never grow (a
 * new field would come with a new struct and new calls).
 */
typedef struct tally_charge {
	uint32_t kind;  /* TALLY_KIND_BUDGET or TALLY_KIND_RATELIMIT */
	uint32_t flags; /* TALLY_CHARGE_* */
	const char *key;
	size_t key_len; /* bytes, or TALLY_KEY_STRLEN (NUL-terminated) */
	int64_t amount; /* budget, >= 0 */
	int64_t tokens; /* rate limit, >= 0 */
	int64_t requests;
} tally_charge;

/* What one limit of a hold really cost (tally_settle), or the amount of a
 * partial charge; the fields as in tally_charge. */
typedef struct tally_cost {
	int64_t amount;
	int64_t tokens;
	int64_t requests;
} tally_cost;

/* One record of a hold. Read-only to the caller: a changed byte makes the
 * whole handle TALLY_EINVAL. */
typedef struct tally_hold_part {
	uint64_t record; /* opaque */
	uint64_t hash;   /* opaque */
	uint64_t incarnation;
	int64_t slot;      /* opaque: the expiry slot */
	int64_t amount[2]; /* still held: budget [0]; tokens, requests */
	uint32_t kind;     /* a tally_kind */
	uint32_t flags;    /* the charge's TALLY_CHARGE_* */
} tally_hold_part;

/* tally_hold.state */
#define TALLY_HOLD_NONE 0u    /* never held (_INIT) */
#define TALLY_HOLD_LIVE 1u    /* held: settle or release it */
#define TALLY_HOLD_SETTLED 2u /* settled or released */

/* A hold on n records, filled by tally_admit(). part[i] is charges[i]. */
typedef struct tally_hold {
	size_t size; /* sizeof(tally_hold); set by _INIT */
	uint64_t store_id;
	int64_t deadline; /* ns: now + ttl at admission */
	uint32_t n;
	uint32_t state; /* TALLY_HOLD_* */
	uint64_t check; /* opaque */
	tally_hold_part part[TALLY_ADMIT_MAX];
} tally_hold;

/* clang-format off */
#define TALLY_HOLD_INIT {sizeof(tally_hold), 0, 0, 0, TALLY_HOLD_NONE, 0, {{0}}}
/* clang-format on */

/* Default and largest tally_store_options.hold_ttl_max. */
#define TALLY_HOLD_TTL_MAX_DEFAULT INT64_C(600000000000)    /* 10 minutes */
#define TALLY_HOLD_TTL_MAX_LIMIT INT64_C(31622400000000000) /* 366 days */

/* Decision flags (per counter, per limit, and their union per call). */
#define TALLY_DECISION_DENIED 0x1u    /* refuses (or would, in the mask) */
#define TALLY_DECISION_TOO_BIG 0x2u   /* amount > max: can never pass */
#define TALLY_DECISION_OVERDRAFT 0x4u /* charged more than was held */
#define TALLY_DECISION_LATE 0x8u      /* the hold had expired */
#define TALLY_DECISION_SHADOW_WOULD_DENY 0x10u
#define TALLY_DECISION_REACHED 0x20u /* now used + held >= max */
/* The record was removed (or created again), or (settle) the hold is not
 * on it, as with a settled copy of the handle: nothing done there. */
#define TALLY_DECISION_GONE 0x40u
#define TALLY_DECISION_UNLIMITED 0x80u /* counter without a max */
#define TALLY_DECISION_OVERFLOW 0x100u /* sum past INT64_MAX: not charged */
/* The counter is a sliding window (TALLY_ALGORITHM_SLIDING): used is its
 * estimate, and a header's reset is the time a refused request could pass. */
#define TALLY_DECISION_SLIDING 0x200u

/* retry_after when a request of this size can never pass. */
#define TALLY_RETRY_NEVER INT64_MAX

/*
 * One counter of a limit as the call left it (or, refused, as it found
 * it): the effective state at the call's time (due windows rolled,
 * expired holds dropped).
 */
typedef struct tally_counter_report {
	uint32_t counter; /* TALLY_COUNTER_* */
	uint32_t flags;   /* TALLY_DECISION_* */
	int64_t max;      /* 0 when TALLY_DECISION_UNLIMITED */
	int64_t used;
	int64_t held;
	int64_t remaining; /* max - used - held, at least 0 (unlimited:
			      INT64_MAX) */
	int64_t window_start;
	int64_t window_end; /* the reset time; INT64_MAX: never */
	/* ns from the call's time until a request of this size could pass,
	 * all else equal (the window rolls, holds expire at their slot
	 * boundary): 0 if it passes now, TALLY_RETRY_NEVER if it never can
	 * (TOO_BIG, or a budget with no period that is spent). */
	int64_t retry_after;
	int64_t overdraft; /* settle, partial: units beyond what was held */
} tally_counter_report;

/* One limit: a budget's counter is c[0]; a rate limit's c[0] tokens and
 * c[1] requests. */
typedef struct tally_limit_report {
	uint32_t kind;  /* a tally_kind; 0 if not reached (see refused) */
	uint32_t flags; /* union of its counters' flags */
	tally_counter_report c[2];
	uint64_t version; /* of the snapshot the report shows */
	uint64_t incarnation;
} tally_limit_report;

typedef struct tally_decision {
	size_t size;     /* sizeof(tally_decision); set by _INIT */
	int64_t now;     /* the call's time (one clock reading per call) */
	int32_t refused; /* index of the first refusing limit, or -1 */
	uint32_t n;      /* limits reported: limit[0 .. n-1] */
	uint32_t mask;   /* bit i: limit i refuses, or would */
	uint32_t flags;  /* union of every limit's flags */
	tally_limit_report limit[TALLY_ADMIT_MAX];
} tally_decision;

/* clang-format off */
#define TALLY_DECISION_INIT {sizeof(tally_decision), 0, -1, 0, 0, 0, {{0}}}
/* clang-format on */

/* tally_admit modes */
#define TALLY_ADMIT_HOLD 1u    /* hold the estimates until tally_settle */
#define TALLY_ADMIT_CONSUME 2u /* take them as used now (try_consume) */
#define TALLY_ADMIT_PEEK 3u    /* could they pass now? changes nothing */

/*
 * Admit a request across n limits (1 to TALLY_ADMIT_MAX), all or nothing.
 * Mode HOLD holds every estimate until tally_settle() or tally_release()
 * (hold: required, its size set by TALLY_HOLD_INIT; ttl_ns: 1 to the
 * store's hold_ttl_max); mode CONSUME adds every amount to used at once,
 * the try_consume of several limits; mode PEEK answers as HOLD would now
 * and changes nothing. For CONSUME and PEEK, hold must be NULL and ttl_ns
 * 0. decision (may be NULL) receives one report per charge, in the
 * charges' order. One clock reading serves the whole call.
 *
 * Returns TALLY_OK (admitted: with HOLD, *hold is live), TALLY_LIMITED
 * (refused: nothing changed; decision->refused and ->mask say which),
 * TALLY_ENOENT (a charge's record does not exist: nothing changed;
 * decision->refused names it, flagged GONE), TALLY_EINVAL (NULL store or
 * charges, n out of range, bad mode, ttl, flags, kind, amount < 0 or an
 * amount the kind does not use, two charges of one record, bad sizes),
 * TALLY_EKEY, TALLY_ENOMEM, TALLY_EOVERFLOW (a held sum or a version would
 * overflow: nothing changed). *hold changes only on TALLY_OK. The decision
 * is filled on TALLY_OK, TALLY_LIMITED and TALLY_ENOENT; after another
 * error it is left as it was (bad arguments) or has n == 0.
 */
TALLY_API TALLY_NODISCARD int tally_admit(tally_store *store,
					  const tally_charge *charges, size_t n,
					  uint32_t mode, int64_t ttl_ns,
					  tally_hold *hold,
					  tally_decision *decision);

/*
 * Settle a live hold: for each record, in one CAS, release what the hold
 * still holds and add actual[i] to used in the window current now. n must
 * equal hold->n. Never refused: an actual above the hold is an overdraft
 * (charged, flagged, counted); a hold that expired is charged in full and
 * flagged LATE; a record that was removed is flagged GONE and untouched;
 * an actual that would take used past INT64_MAX is not charged there
 * (flagged OVERFLOW; the hold is still released). The hold is marked
 * settled. Returns TALLY_OK, TALLY_ESETTLED (already settled: nothing
 * changed), TALLY_EINVAL (NULL store or hold, a hold never taken, changed
 * or of another store, n != hold->n, actual NULL or negative, bad sizes),
 * TALLY_ENOMEM (nothing changed).
 */
TALLY_API TALLY_NODISCARD int tally_settle(tally_store *store, tally_hold *hold,
					   const tally_cost *actual, size_t n,
					   tally_decision *decision);

/* tally_settle with every actual 0 (upstream error, cancel). */
TALLY_API TALLY_NODISCARD int
tally_release(tally_store *store, tally_hold *hold, tally_decision *decision);

/*
 * A partial charge of a live hold (streaming): for each record, in one
 * CAS, add amount[i] to used and take up to that much out of what the hold
 * still holds there (hold->part[i].amount goes down by it; the excess is
 * an overdraft). The hold stays live: a later settle charges its actual on
 * top of the partial charges and releases the rest. Each report says
 * TALLY_DECISION_REACHED when used + held >= max after the charge, so the
 * caller may cut the stream. Results as tally_settle's, except that the
 * hold is not marked settled.
 */
TALLY_API TALLY_NODISCARD int tally_settle_partial(tally_store *store,
						   tally_hold *hold,
						   const tally_cost *amount,
						   size_t n,
						   tally_decision *decision);

/* ------------------------------------------------------------------------ */
/* Headers                                                                  */
/* ------------------------------------------------------------------------ */

/* tally_header_policy.unit */
#define TALLY_UNIT_OTHER 0u    /* money or any unit: tally-qu="other" */
#define TALLY_UNIT_REQUESTS 1u /* IETF registered: qu="requests" */
#define TALLY_UNIT_CONCURRENT_REQUESTS 2u /* qu="concurrent-requests" */
#define TALLY_UNIT_TOKENS 3u              /* LLM tokens: tally-qu="tokens" */

/* A counter of a decision to describe in headers, under a policy name. */
typedef struct tally_header_policy {
	const char *name; /* sf-string content: printable ASCII */
	uint32_t limit;   /* index into decision->limit */
	uint32_t counter; /* TALLY_COUNTER_BUDGET, _TOKENS or _REQUESTS */
	uint32_t unit;    /* TALLY_UNIT_* */
} tally_header_policy;

/* tally_headers_format fields */
#define TALLY_HEADERS_IETF 0x1u   /* RateLimit-Policy, RateLimit */
#define TALLY_HEADERS_LEGACY 0x2u /* X-RateLimit-Limit/-Remaining/-Reset */
#define TALLY_HEADERS_LEGACY_EPOCH 0x4u /* legacy, reset in epoch seconds */
#define TALLY_HEADERS_OPENAI 0x8u       /* x-ratelimit-*-requests/-tokens */
#define TALLY_HEADERS_RETRY_AFTER 0x10u /* Retry-After, when refused */

/*
 * Format the header fields of a decision into buf, one "Name: value\r\n"
 * line per field, NUL-terminated, in this order: RateLimit-Policy,
 * RateLimit, Retry-After, X-RateLimit-*, x-ratelimit-*. Each policy names
 * one counter of one limit of the decision; a counter without a max, a
 * limit flagged GONE and one the call did not reach appear in no field. A
 * counter flagged DENIED is refusing: it shows 0 remaining everywhere.
 * Delays are rounded up at nanosecond resolution (1 ns past a second is
 * one more second) and are never 0 on a refusing counter.
 *   IETF (draft-ietf-httpapi-ratelimit-headers, May 2026): one list member
 *     per policy, the refusing ones first (each group in the caller's
 *     order). RateLimit-Policy: "name";q=MAX then ;qu="requests" or
 *     ;qu="concurrent-requests" (the registered units), ;w=WINDOW seconds,
 *     and ;tally-qu="tokens" or ;tally-qu="other" for the others (the
 *     draft's default unit is requests, so they must say theirs).
 *     RateLimit: "name";r=REMAINING;t=SECONDS until the window ends; a
 *     refusing counter's t is at most its retry-after. q and r are capped
 *     at 999999999999999 (the largest sf-integer). A counter that never
 *     resets has no w, and a t only when refusing; concurrent-requests
 *     counters have no window (held requests do not leave at a roll).
 *   Retry-After (only when decision->refused >= 0): the largest
 *     retry-after of the refusing counters, in seconds, at least 1; absent
 *     when one of them can never pass (TOO_BIG, TALLY_RETRY_NEVER).
 *   Legacy: X-RateLimit-Limit, -Remaining, -Reset of one policy: the first
 *     refusing one, else the one with the least remaining (the first of a
 *     tie); reset in seconds from now, or with LEGACY_EPOCH (which implies
 *     LEGACY) the window end in epoch seconds rounded up, as GitHub does.
 *   OpenAI: x-ratelimit-limit-, -remaining-, -reset-requests and -tokens,
 *     of one REQUESTS and one TOKENS policy chosen as for legacy, only the
 *     units present; resets as durations rounded up: under a second whole
 *     milliseconds ("12ms", at least "1ms"), from there whole seconds in Go
 *     style ("45s", "6m0s", "1h2m3s"), 0 as "0s".
 * Returns the length of the full text (not counting the NUL), like
 * snprintf: if that is >= size the text was truncated (buf NULL with size
 * 0 measures). Returns TALLY_EINVAL (nothing written; buf[0] = 0 when size
 * > 0) for a NULL decision, a bad size, decision->n > TALLY_ADMIT_MAX, a
 * NULL policies with npolicies > 0, a policy naming a limit or counter the
 * decision lacks or an unknown unit, a NULL name or one that is not
 * printable ASCII (" and \ are escaped), unknown bits in fields, or a NULL
 * buf with size > 0; TALLY_EOVERFLOW if the text would pass INT_MAX bytes.
 */
TALLY_API int tally_headers_format(const tally_decision *decision,
				   const tally_header_policy *policies,
				   size_t npolicies, uint32_t fields, char *buf,
				   size_t size);

/* ------------------------------------------------------------------------ */
/* Metrics: the Prometheus text exposition format (0.4)                     */
/* ------------------------------------------------------------------------ */

/*
 * tally_metrics_write() writes a store's stats and, when asked, gauges of
 * its records in the Prometheus text exposition format 0.0.4 (a scrape
 * body, Content-Type "text/plain; version=0.0.4"). It does no I/O and
 * needs nothing beyond the library: the text goes to the caller's sink,
 * in chunks of at most 4 KiB (the last one shorter; never a chunk of 0
 * bytes), which the caller writes to its HTTP response, a file or a
 * buffer.
 *
 * Families, in this order (names with the default prefix "tally_"; every
 * family has # HELP and # TYPE, and all its samples follow them):
 *   gauges of tally_stats: tally_records, tally_threads,
 *     tally_threads_active, tally_pending, tally_peak_pending;
 *   counters of tally_stats: tally_writes_total, tally_cas_retries_total,
 *     tally_rolls_total, tally_retired_total, tally_freed_total,
 *     tally_admitted_total, tally_refused_total{reason="limit"|"too_big"|
 *     "race"|"missing"} (refused_limit, _too_big, _race, _missing),
 *     tally_compensations_total, tally_holds_total, tally_settles_total,
 *     tally_releases_total, tally_partials_total, tally_late_settles_total,
 *     tally_overdraft_units_total, tally_expired_holds_total,
 *     tally_expired_units_total, tally_shadow_would_deny_total;
 *   with max_records > 0: tally_records_exported (records whose gauges
 *     follow) and tally_records_truncated (the records the cap left out:
 *     0 if the walk ended before max_records, else tally_records minus
 *     max_records, at least 0), then one family per gauge,
 *     with a sample per counter of each exported record:
 *       tally_used                the counter's usage
 *       tally_held                what its live holds hold
 *       tally_max                 its max (none for a counter without one)
 *       tally_window_end_seconds  its window's end, Unix seconds (none
 *                                 when the end is INT64_MAX: never)
 *     labelled kind="budget"|"ratelimit", key="..." and
 *     counter="budget"|"tokens"|"requests", e.g.
 *       tally_used{kind="ratelimit",key="acme",counter="tokens"} 1200
 *     A family with no sample is left out. A family's records come in the
 *     store's order (tally_export's), the same in every family.
 * The stats come from one tally_store_stats() call at the start (see
 * there: a moment's approximation while other threads run). The records
 * come from one tally_export() walk (its guarantees hold): each record's
 * numbers are from one snapshot, as stored, like tally_*_get: a due
 * window shows its old usage and its end in the past until a write or a
 * sweep rolls it, and a hold that expired is counted in held until the
 * record's next CAS drops it. A sliding counter (TALLY_ALGORITHM_SLIDING)
 * shows its current window's stored usage as tally_used, not the estimate.
 * The call keeps the walk's records in memory from the store's allocator
 * (about 100 bytes and the key per record, up to twice that as the arrays
 * double) until the text is written, so that every family can list
 * them; tally_records_truncated is exact when no record is created or
 * removed during the call. The walk stops at max_records: records past
 * the cap are not visited.
 *
 * Values: integers in decimal, window ends in seconds with exactly 9
 * fractional digits ("1767225600.000000000", "-0.500000000"; exact, no
 * floating point). Prometheus reads every value as a float64: integers
 * above 2^53 (about 9.007e15) and window ends with a nanosecond part lose
 * precision there; the text itself is exact.
 *
 * Keys as label values: a key is any bytes, so it is encoded, injectively
 * and always as valid UTF-8:
 *   - a well-formed UTF-8 sequence (shortest form, no surrogate, at most
 *     U+10FFFF) of a code point from U+00A0 up is kept as is, and so is
 *     printable ASCII (0x20 to 0x7e) but '%';
 *   - every other byte is written %XX, two uppercase hex digits: '%',
 *     controls (0x00 to 0x1f, 0x7f, and the bytes of U+0080 to U+009F),
 *     and every byte that is not part of a well-formed sequence (0xff, a
 *     truncated or overlong sequence, a surrogate);
 *   - then the format's escapes: '\' is written "\\" and '"' "\"" (a
 *     newline is already %0A).
 * Decoding (undo the escapes, then %XX to a byte and every other character
 * to its UTF-8 bytes) gives back the key. In C notation: the key "a%b" is
 * key="a%25b", "a\0b" key="a%00b", "\xff" key="%FF", "q\"" (q and a
 * quote) key="q\"", and "caf\xc3\xa9" (e acute) stays as it is.
 */

/* The caller's sink: len > 0 bytes of text (not NUL-terminated). Return 0
 * to go on; anything else stops the writer, which returns it. */
typedef int tally_write_fn(void *ctx, const char *data, size_t len);

typedef struct tally_metrics_options {
	size_t size;          /* sizeof(tally_metrics_options); set by _INIT */
	const char *prefix;   /* NULL: "tally_"; [a-zA-Z_:][a-zA-Z0-9_:]* */
	uint64_t max_records; /* 0: no record gauges; else at most this many */
	uint32_t flags;       /* none defined yet: must be 0 */
} tally_metrics_options;

/* clang-format off */
#define TALLY_METRICS_OPTIONS_INIT                                             \
	{sizeof(tally_metrics_options), NULL, 0, 0}
/* clang-format on */

/*
 * Write the store's metrics (see above) to fn. options may be NULL (the
 * defaults: prefix "tally_", no record gauges). The prefix starts every
 * metric name; it must be non-empty and match [a-zA-Z_:][a-zA-Z0-9_:]*
 * (a ':' is valid but reserved for recording rules: promtool warns). The
 * call changes no record; with max_records > 0 it registers the calling
 * thread with the store, like any call that walks it. fn runs outside
 * every lock and section and may call the store (not tally_store_destroy).
 * Returns TALLY_OK, fn's nonzero result (fn has had a prefix of the text,
 * ending at some chunk's end; a sink that returns values other than the
 * TALLY_* codes can tell its stop from the writer's errors), TALLY_EINVAL
 * (NULL store or fn, options->size smaller than the first layout, a bad
 * prefix, nonzero flags), or TALLY_ENOMEM (the calling thread could not
 * be registered or the records could not be kept). fn is called only
 * after every check and allocation passed: on an error it has not been
 * called.
 */
TALLY_API int tally_metrics_write(tally_store *store,
				  const tally_metrics_options *options,
				  tally_write_fn *fn, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* TALLY_H */
