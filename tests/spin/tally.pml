/*
 * A Promela model of tally's write protocol: immutable snapshots replaced
 * by compare-and-swap, reclaimed by epochs (ck_epoch's scheme).
 *
 * NT threads each perform NOPS bumps of 1 on one record. A bump enters an
 * epoch section (active = 1, then read the global epoch), loads the current
 * snapshot, reads it, builds a successor in a fresh slot, and CASes the
 * record's pointer; on success it retires the old snapshot, stamped with the
 * global epoch read at retire time; on failure it retries with the snapshot
 * that won. It then leaves the section and polls: the poll scans every
 * thread, one step per thread, and advances the global epoch by CAS if every
 * active thread has observed it; retired snapshots whose stamp is at least
 * two epochs old are freed (their slot's generation changes, and the slot
 * may be handed out again).
 *
 * Checked:
 *   - no access to a freed snapshot: every read of a loaded snapshot asserts
 *     that its slot is still in the generation that was loaded;
 *   - every version is installed once;
 *   - conservation: at the end the current snapshot holds NT * NOPS.
 *
 * Variants that must FAIL (compile with -D...):
 *   EARLY_FREE   frees a snapshot one epoch after it was retired;
 *   LOST_UPDATE  installs with a plain store instead of a CAS.
 */

#ifndef NT
#define NT 2
#endif
#ifndef NOPS
#define NOPS 2
#endif

/* Enough slots that allocation never fails: the initial snapshot, one
 * successor per bump and one spare per thread. */
#define NS (1 + NT * NOPS + NT)

#define S_FREE 0
#define S_LIVE 1
#define S_RETIRED 2

#ifdef EARLY_FREE
#define GRACE 1
#else
#define GRACE 2
#endif

byte state[NS];
byte gen[NS];
byte usage[NS];
byte version[NS];
byte stamp[NS];

byte cur = 0;    /* the record's snapshot pointer */
byte ge = 1;     /* global epoch */
bit inside[NT];
byte lep[NT];    /* epoch each thread observed at section entry */
byte installed[NT * NOPS + 2];
byte finished = 0;

inline alloc(n)
{
	d_step {
		n = 0;
		do
		:: n < NS && state[n] != S_FREE -> n++
		:: else -> break
		od;
		assert(n < NS);
		state[n] = S_LIVE
	}
}

/* Reading a field of snapshot p is only legal while p's slot is still the
 * object that was loaded. */
inline check_live(p, g)
{
	assert(gen[p] == g && state[p] != S_FREE)
}

inline poll(id)
{
	e = ge;
	j = 0;
	ok = 1;
	do
	:: j < NT ->
		/* one step per scanned thread: others run meanwhile */
		if
		:: inside[j] && lep[j] != e -> ok = 0
		:: else -> skip
		fi;
		j++
	:: else -> break
	od;
	atomic {
		if
		:: ok && ge == e -> ge = e + 1
		:: else -> skip
		fi
	}
	d_step {
		k = 0;
		do
		:: k < NS ->
			if
			:: state[k] == S_RETIRED && stamp[k] + GRACE <= ge ->
				state[k] = S_FREE;
				gen[k]++
			:: else -> skip
			fi;
			k++
		:: else -> break
		od
	}
}

proctype worker(byte id)
{
	byte i, p, g, n, u, v, e, j, k;
	bit ok, won;

	i = 0;
	do
	:: i < NOPS ->
		alloc(n);
		/* ck_epoch_begin: announce, then observe the global epoch */
		inside[id] = 1;
		lep[id] = ge;
retry:
		skip;
		d_step { p = cur; g = gen[p] }
		check_live(p, g);
		u = usage[p];
		check_live(p, g);
		v = version[p];
		usage[n] = u + 1;
		version[n] = v + 1;
#ifdef LOST_UPDATE
		cur = n;
		won = 1;
#else
		atomic {
			if
			:: cur == p -> cur = n; won = 1
			:: else -> won = 0
			fi
		}
#endif
		if
		:: won ->
			d_step {
				assert(installed[v + 1] == 0);
				installed[v + 1]++;
				state[p] = S_RETIRED;
				stamp[p] = ge
			}
		:: else -> goto retry
		fi;
		/* ck_epoch_end */
		inside[id] = 0;
		poll(id);
		i++
	:: else -> break
	od;
	finished++
}

init
{
	byte t;

	d_step {
		state[0] = S_LIVE;
		usage[0] = 0;
		version[0] = 0;
		cur = 0
	}
	atomic {
		t = 0;
		do
		:: t < NT -> run worker(t); t++
		:: else -> break
		od
	}
	finished == NT;
	assert(usage[cur] == NT * NOPS);
	assert(version[cur] == NT * NOPS)
}
