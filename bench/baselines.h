/*
 * Baselines for tally-bench: the designs a gateway has today, with the same
 * semantics as a tally budget, so that tally-bench compares designs rather
 * than features.
 *
 * Every baseline is a string-keyed open-addressing map (linear probing, load
 * factor at most 0.5, like tally's ck_hs) hashed with tally__hash, the
 * library's own hash function. A record is {usage, window_start, window_end,
 * max}; its window is the lattice tally uses for the same config (a fixed
 * period, calendar aligned, computed by tally__window), and every write
 * rolls a due window first, exactly as a tally budget does. Writes and
 * checks read the store clock (clock_gettime(CLOCK_REALTIME), the default
 * clock of a tally store) once per operation; get reads no clock, as in
 * tally.
 *
 *   BL_MUTEX   one pthread mutex around the map and every record.
 *   BL_RWLOCK  a pthread rwlock on the map (read lock for lookups) and a
 *              mutex per record.
 *   BL_RACY    Go's sync.Map load-clone-store pattern done naively: load the
 *              record pointer, copy the record, modify the copy, store a
 *              pointer to the copy with no CAS. Concurrent writers lose
 *              increments; tally-bench counts them. Copies come from
 *              per-thread arenas and are reused only after every other
 *              thread has finished an operation since they stopped being
 *              current (quiescent-state reclamation, standing in for Go's
 *              garbage collector), so no reader sees a recycled record.
 *   BL_FLOOR   the floor of any design that looks a key up: hash, probe, one
 *              atomic fetch-add on the record's counter (no clock, no window).
 *
 * The map itself is built once, before the threads start, and never changes
 * shape while they run (the mutex and rwlock baselines still take their
 * locks for lookups, as a map that can change would need).
 *
 * Results are the tally codes: TALLY_OK, TALLY_LIMITED, TALLY_ENOENT,
 * TALLY_EOVERFLOW.
 */
#ifndef TALLY_BENCH_BASELINES_H
#define TALLY_BENCH_BASELINES_H

#include <stddef.h>
#include <stdint.h>

enum bl_impl {
	BL_MUTEX,
	BL_RWLOCK,
	BL_RACY,
	BL_FLOOR
};

/* A record as the caller sees it (get). */
struct bl_view {
	int64_t usage;
	int64_t window_start;
	int64_t window_end;
	int64_t max;
};

struct bl_map;

/*
 * A map of n records, one per key (keys must be distinct), each with the
 * given max and a calendar-aligned fixed window of period_ns, opened at
 * the current time. Keys are copied. NULL on allocation failure.
 */
struct bl_map *bl_create(enum bl_impl impl, const char *const *keys, size_t n,
			 int64_t max, int64_t period_ns);
void bl_destroy(struct bl_map *m);

/* BL_RACY: fills the pool of memory for record copies with about one copy
 * per key plus 32 MiB, written to once, so that the first run does not pay
 * for first touches of fresh memory (very slow under some hypervisors).
 * Not part of a record's memory: call it after measuring that. A no-op for
 * the other kinds. */
void bl_warm(struct bl_map *m);

/* Sum of usage over all records plus the usage of every window that rolled
 * (so it only grows by what was applied). Quiescent only: no thread may be
 * in an operation. */
int64_t bl_sum(struct bl_map *m);

/* BL_RACY: moves every live record out of the thread arenas and recycles
 * their memory for the next run. Quiescent only. A no-op for the other
 * kinds. */
void bl_quiesce(struct bl_map *m);

/* Bytes of record copies the racy threads have allocated since the last
 * bl_quiesce (0 for the other kinds). Safe to call while threads run. */
size_t bl_arena_bytes(const struct bl_map *m);

/* The operations, one per (kind, op). Keys that are not in the map give
 * TALLY_ENOENT. */
int bl_mutex_bump(struct bl_map *m, const char *key, int64_t amount);
int bl_mutex_check(struct bl_map *m, const char *key);
int bl_mutex_try_consume(struct bl_map *m, const char *key, int64_t amount);
int bl_mutex_get(struct bl_map *m, const char *key, struct bl_view *view);

int bl_rwlock_bump(struct bl_map *m, const char *key, int64_t amount);
int bl_rwlock_check(struct bl_map *m, const char *key);
int bl_rwlock_try_consume(struct bl_map *m, const char *key, int64_t amount);
int bl_rwlock_get(struct bl_map *m, const char *key, struct bl_view *view);

int bl_racy_bump(struct bl_map *m, const char *key, int64_t amount);
int bl_racy_check(struct bl_map *m, const char *key);
int bl_racy_try_consume(struct bl_map *m, const char *key, int64_t amount);
int bl_racy_get(struct bl_map *m, const char *key, struct bl_view *view);

/* The floor: writes are one fetch-add, reads one acquire load, after the
 * same hash and probe. try_consume is a fetch-add too (the floor of a
 * conditional write). */
int bl_floor_add(struct bl_map *m, const char *key, int64_t amount);
int bl_floor_load(struct bl_map *m, const char *key, int64_t *value);

/* ------------------------------------------------------------------------ */
/* Admission baselines: tally_admit (HOLD) and tally_settle, with locks     */
/* ------------------------------------------------------------------------ */

/*
 * The same semantics as tally's holds, on the same kind of map: every
 * counter keeps `used` and `held`; a window rolls on touch (tally's
 * lattice, tally__window, zeroing used and keeping held); admission of
 * estimates e passes iff used + held + e <= max on every counter of every
 * record, and then holds every one of them, or none (nothing is written on
 * a refusal, not even a due roll, as in tally's read-only first pass);
 * settle releases each hold and adds the actual to used in the window
 * current at settle time, never refused (an overdraft is charged in full;
 * a sum past INT64_MAX is not charged, as in tally). The handle keeps each
 * entry's address and hash; settle finds the entry again by that identity
 * through the map (a probe on the hash that compares addresses), as
 * tally's settle does. One clock reading (CLOCK_REALTIME, as tally_admit
 * and tally_settle read it) per call. What these do not do that tally does:
 * hold deadlines and expiry, versions, the full decision (retry-after,
 * flags): they are cheaper than tally's calls by that much.
 *
 *   BLA_MUTEX   one pthread mutex around the map and every record (the
 *               mutex baseline's scheme): a call takes it once for all of
 *               its records.
 *   BLA_RWLOCK  an rwlock on the map (read lock) and a mutex per record;
 *               a call locks its records in one global order (hash, then
 *               address), so two calls cannot deadlock, and holds all of
 *               them while it decides.
 */
enum bla_lock {
	BLA_MUTEX,
	BLA_RWLOCK
};

#define BLA_MAX 16 /* records per call, as TALLY_ADMIT_MAX */

/* A record to create: kind TALLY_KIND_BUDGET (counter 0) or
 * TALLY_KIND_RATELIMIT (0 tokens, 1 requests); every counter has a max
 * and a calendar-aligned period (tally_period: fixed, week or month). */
struct bla_def {
	const char *key;
	uint32_t kind;
	int64_t max[2];
	int64_t period_count[2];
	int32_t period_unit[2];
};

/* One limit of a call: amount[0] budget, or [0] tokens and [1] requests. */
struct bla_charge {
	uint32_t kind;
	const char *key;
	size_t key_len;
	int64_t amount[2];
};

struct bla_hold {
	unsigned n;
	struct {
		void *e;
		uint64_t hash;
		int64_t amount[2];
	} part[BLA_MAX];
};

/* What a call left on a counter (a refused call: what it found). */
struct bla_report {
	int64_t max, used, held, remaining, window_start, window_end;
};

struct bla_map;

/* NULL on allocation failure or a bad definition (duplicate keys too). */
struct bla_map *bla_create(enum bla_lock lock, const struct bla_def *defs,
			   size_t n);
void bla_destroy(struct bla_map *m);

/*
 * Admit n (1 to BLA_MAX) charges, all or nothing: TALLY_OK (h filled),
 * TALLY_LIMITED (nothing changed), TALLY_ENOENT, TALLY_EINVAL (two charges
 * of one record, a kind mismatch, n out of range), TALLY_EOVERFLOW. rep
 * (may be NULL) receives 2 reports per charge, [2 * i + counter].
 */
int bla_admit(struct bla_map *m, const struct bla_charge *c, unsigned n,
	      struct bla_hold *h, struct bla_report *rep);

/* Settle h with actual[i][counter] per part; *overdraft (may be NULL)
 * receives the units charged beyond the holds. TALLY_OK, or TALLY_ENOENT
 * if a part's record is gone (the others are settled). */
int bla_settle(struct bla_map *m, const struct bla_hold *h,
	       const int64_t (*actual)[2], int64_t *overdraft);

/* Sums by counter id (TALLY_COUNTER_BUDGET, _TOKENS, _REQUESTS): used
 * over every record plus the used of every window that rolled, and held.
 * Quiescent only. */
void bla_sum(struct bla_map *m, int64_t used[3], int64_t held[3]);

#endif /* TALLY_BENCH_BASELINES_H */
