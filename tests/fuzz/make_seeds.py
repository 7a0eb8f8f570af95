#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses.

    python3 tests/fuzz/make_seeds.py [--out tests/fuzz/corpus]

corpus/ops/*: programs for fuzz_ops.c, written with an encoder that mirrors
the harness's decoder byte for byte (keep them in step: every pick_* and
op_* of fuzz_ops.c has its twin here). Each seed is a meaningful scenario
(rolls, boundaries, calendar months, resets, versions, overflow, bad input,
sweeps, clock going back...), so the fuzzer starts deep instead of having
to discover that an upsert must come first.

corpus/period/*: texts for fuzz_period.c (every unit, compounds, limits,
malformed forms), plus raw 9-byte periods.

Deterministic: running it again rewrites the same files.
"""

import argparse
import datetime
import os
import random
import struct

NS = 1_000_000_000
MIN = 60 * NS
HOUR = 3600 * NS
DAY = 86400 * NS
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
T_MIN = -2208988800 * NS  # 1900-01-01
T_MAX = 7258118400 * NS  # 2200-01-01


def T(y, mo=1, d=1, h=0, mi=0, s=0):
    e = datetime.datetime(1970, 1, 1)
    dt = datetime.datetime(y, mo, d, h, mi, s)
    delta = dt - e
    return (delta.days * 86400 + delta.seconds) * NS


def u8(v):
    return bytes([v & 0xFF])


def u16(v):
    return struct.pack(">H", v & 0xFFFF)


def u64(v):
    return struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)


# Opcodes (do_op: op % 32).
OP = {
    "b_upsert": 0, "b_get": 3, "b_bump": 4, "b_check": 6, "b_try": 7,
    "b_reset": 9, "b_remove": 10,
    "r_upsert": 11, "r_get": 14, "r_bump": 15, "r_check": 17, "r_try": 18,
    "r_reset": 20, "r_remove": 21,
    "sweep": 22, "clock": 24,
}

# Hold operations: op bytes 0x98..0x9f (op % 32 >= 24, top bit set).
HOLD_OP = {"admit": 0x98, "settle": 0x9B, "handle": 0x9D, "hclock": 0x9E}

# Keys: indexes of good_keys[], or the bad ones ("a0b" and "nul" hold NUL
# bytes: _n only).
KEYS = {"a": 0, "b": 1, "hi": 2, "k255": 3, "a0b": 4, "nul": 5, "NULL": 0xF0,
        "": 0xF1, "k256": 0xF2}

# tally_store_options.hold_ttl_max by the start time's bits 2..4
# (fuzz_ops.c ttl_max_table): index -> (ttl_max, grain).
TTL_MAX = [(600 * NS, 200 * NS), (60 * NS, 20 * NS), (NS, 333333334),
           (3, 1), (7, 3), (31622400000000000, 10540800000000000),
           (3600 * NS, 1200 * NS), (1000, 334)]
HOLD_AMOUNTS = [0, 1, 1, 2, 3, 5, 10, 100]
MODES = {"hold": 0, "consume": 4, "peek": 6, "bad0": 7, "bad4": 0x87}

# The flags byte of op_budget / op_ratelimit: the low 3 bits pick the view
# (0: none, 1: a size below every layout, 2: the 0.2 layout, else the
# current one); a rate limit's 0x18 bits the mask (0: none).
VIEW = 3
RVIEW = 0x0B

MAX_TABLE = [0, 1, 2, 3, 5, 10, 100, 1000, INT64_MAX, INT64_MAX - 1]
AMOUNT_TABLE = [0, 0, 1, 1, 2, 3, 5, 10, 100, INT64_MAX, INT64_MAX - 1]
OFFSET_TABLE = [0, 0, 0, 60, -60, 330, -330, 1439, -1439, 1440, -1440, 600,
                -480]
MASKS = {"T": 0, "R": 1, "B": 2, "T!": 3, "R!": 4, "B!": 5, "0": 8,
         "!": 9, "4": 10, "bad": 11, "all": 12}


ALGORITHM = {"F": 0, "S": 20, "bad2": 30, "badmax": 31}


def enc_max(v):
    if v in MAX_TABLE:
        return u8(MAX_TABLE.index(v))
    if v == -1:
        return u8(24)  # 24 % 8 == 0
    if v == INT64_MIN:
        return u8(25)
    if 0 <= v <= 0xFFFF:
        return u8(27) + u16(v)  # 27 % 8 == 3
    return u8(26) + u64(v)  # 26 % 8 == 2: any int64


def enc_amount(v):
    if v in AMOUNT_TABLE:
        return u8(AMOUNT_TABLE.index(v))
    if v == -1:
        return u8(40)  # 40 % 8 == 0
    if v == INT64_MIN:
        return u8(41)
    if 0 <= v <= 0xFFFF:
        return u8(35) + u16(v)  # 35 % 8 == 3
    return u8(34) + u64(v)  # 34 % 8 == 2


def enc_period(p):
    """p: ('none',) ('ns', n) ('s', n) ('min', n) ('d', n) ('w', n)
    ('M', n) ('bad', i) ('huge', i) or a named table entry."""
    kind = p[0]
    if kind == "none":
        return u8(0)
    if kind == "ns":
        n = p[1]
        named = {1: 1, 1000: 2, NS: 3, 60 * NS: 4, HOUR: 5, DAY: 6}
        if n in named:
            return u8(named[n])
        assert 1 <= n <= 4_000_000_000
        return u8(8) + u64(n - 1)
    if kind == "s":
        assert 1 <= p[1] <= 65536
        return u8(7) + u16(p[1] - 1)
    if kind == "min":
        assert 1 <= p[1] <= 120
        return u8(18) + u8(p[1] - 1)
    if kind == "d":
        if p[1] == 1:
            return u8(6)
        assert 2 <= p[1] <= 31
        return u8(15) + u8(p[1] - 2)
    if kind == "w":
        assert 1 <= p[1] <= 3
        return u8(9) + u8(p[1] - 1)
    if kind == "M":
        if p[1] == 1:
            return u8(13)
        if p[1] == 12:
            return u8(14)
        assert 1 <= p[1] <= 13
        return u8(11) + u8(p[1] - 1)
    if kind == "bad":
        return u8(16) + u8(p[1])
    if kind == "huge":
        return u8(17) + u8(p[1])
    raise ValueError(p)


def enc_anchor(a):
    """None: default; 'now'; ('t', time); ('tbl', i)."""
    if a is None:
        return u8(6)
    if a == "now":
        return u8(0)
    if a[0] == "t":
        return u8(3) + u64(a[1] - T_MIN)
    if a[0] == "tbl":
        return u8(4) + u8(a[1])
    if a[0] == "raw":
        return u8(5) + u64(a[1])
    raise ValueError(a)


def enc_offset(o):
    if o in OFFSET_TABLE:
        return u8(OFFSET_TABLE.index(o))
    if o == INT32_MIN:
        return u8(28)  # 28 % 4 == 0
    if o == INT32_MAX:
        return u8(29)
    assert -1439 <= o <= 1439
    return u8(30) + u16(o + 1439)


INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def enc_hold_amount(v):
    if v in HOLD_AMOUNTS:
        return u8(HOLD_AMOUNTS.index(v))
    return u8(0xE0) + enc_amount(v)


class Prog:
    def __init__(self, t0, ttl_index=0):
        # The start time's low bits: expected_records 0, the ttl table.
        self.b = bytearray(u64(t0 + (ttl_index << 2) - T_MIN))
        self.ttl_max, self.grain = TTL_MAX[ttl_index]
        self.live = set()  # (kind, key) for pick_boundary

    def op(self, name):
        self.b += u8(OP[name])

    def key(self, k):
        self.b += u8(KEYS[k])

    # Budgets -------------------------------------------------------------
    def b_upsert(self, k, mx, period, anchor=None, off=0, aligned=False,
                 flags=VIEW, nocfg=False):
        self.op("b_upsert")
        self.key(k)
        self.b += u8(flags)
        self.b += enc_max(mx) + enc_period(period) + enc_anchor(anchor)
        self.b += enc_offset(off) + u8(1 if aligned else 0)
        self.b += u8(0xFF if nocfg else 0)
        if k in ("a", "b", "hi", "k255") and not nocfg:
            self.live.add(("b", k))
        return self

    def b_simple(self, name, k, flags=VIEW):
        self.op(name)
        self.key(k)
        self.b += u8(flags)
        if name == "b_remove":
            self.live.discard(("b", k))
        return self

    def b_get(self, k, flags=VIEW):
        return self.b_simple("b_get", k, flags)

    def b_check(self, k, flags=VIEW):
        return self.b_simple("b_check", k, flags)

    def b_remove(self, k, flags=VIEW):
        return self.b_simple("b_remove", k, flags)

    def b_bump(self, k, amount, flags=VIEW):
        self.b_simple("b_bump", k, flags)
        self.b += enc_amount(amount)
        return self

    def b_try(self, k, amount, flags=VIEW):
        self.b_simple("b_try", k, flags)
        self.b += enc_amount(amount)
        return self

    def b_reset(self, k, version="right", flags=VIEW):
        self.b_simple("b_reset", k, flags)
        self.b += u8({"right": 4, "minus1": 0, "plus1": 1,
                      "other": 3}.get(version, 4))
        return self

    # Rate limits ---------------------------------------------------------
    @staticmethod
    def enc_limit(lim):
        """lim: (max or None, period[, algorithm]); the algorithm ("F",
        "S", "bad2", "badmax") goes in bits 3..7 of the limit's byte,
        as fuzz_ops.c decodes it (0..19 FIXED, 20..29 SLIDING, 30 the
        invalid 2, 31 UINT32_MAX)."""
        mx, period, *alg = lim
        code = ALGORITHM[alg[0] if alg else "F"] << 3
        if mx is None:
            return u8(code) + enc_period(period)
        return u8(1 | code) + enc_max(mx) + enc_period(period)

    def r_upsert(self, k, tokens, requests, anchor=None, off=0,
                 aligned=False, flags=RVIEW, nocfg=False):
        self.op("r_upsert")
        self.key(k)
        self.b += u8(flags)
        self.b += self.enc_limit(tokens) + self.enc_limit(requests)
        self.b += enc_anchor(anchor) + enc_offset(off)
        self.b += u8(1 if aligned else 0) + u8(0xFF if nocfg else 0)
        if k in ("a", "b", "hi", "k255") and not nocfg:
            self.live.add(("r", k))
        return self

    def r_simple(self, name, k, flags=RVIEW):
        self.op(name)
        self.key(k)
        self.b += u8(flags)
        if name == "r_remove":
            self.live.discard(("r", k))
        return self

    def r_get(self, k, flags=RVIEW):
        return self.r_simple("r_get", k, flags)

    def r_check(self, k, flags=RVIEW):
        return self.r_simple("r_check", k, flags)

    def r_remove(self, k, flags=RVIEW):
        return self.r_simple("r_remove", k, flags)

    def r_bump(self, k, tokens, requests, flags=RVIEW):
        self.r_simple("r_bump", k, flags)
        self.b += enc_amount(tokens) + enc_amount(requests)
        return self

    def r_try(self, k, tokens, requests, flags=RVIEW):
        self.r_simple("r_try", k, flags)
        self.b += enc_amount(tokens) + enc_amount(requests)
        return self

    def r_reset(self, k, mask, version="right", flags=RVIEW):
        self.r_simple("r_reset", k, flags)
        self.b += u8({"right": 4, "minus1": 0, "plus1": 1,
                      "other": 3}.get(version, 4))
        self.b += u8(MASKS[mask])
        return self

    # Sweep and clock -----------------------------------------------------
    def sweep(self, cb=True, count=True, null_store=False):
        self.op("sweep")
        f = (1 if cb else 0) | (2 if count else 0)
        self.b += u8(0xFC | f if null_store else f)
        return self

    def export(self, max_index=0, stop=False):
        """tally_export to the end in calls of at most [0 (all), 1, 3,
        64][max_index] records, fn stopping at the second with stop:
        the sweep op with flags 0x50 .. 0x5f."""
        self.op("sweep")
        self.b += u8(0x50 | (max_index << 2) | (1 if stop else 0))
        return self

    def fwd_ns(self, n):
        assert 1 <= n <= 65536
        self.op("clock")
        self.b += u8(0) + u16(n - 1)
        return self

    def fwd_s(self, n):
        self.op("clock")
        self.b += u8(1) + u16(n)
        return self

    def fwd_h(self, n):
        self.op("clock")
        self.b += u8(2) + u8(n - 1)
        return self

    def fwd_d(self, n):
        self.op("clock")
        self.b += u8(3) + u8(n - 1)
        return self

    def fwd_months(self, n):
        self.op("clock")
        self.b += u8(4) + u8(n - 1)
        return self

    def fwd_years(self, n):
        self.op("clock")
        self.b += u8(5) + u8(n - 1)
        return self

    def back_ns(self, n):
        self.op("clock")
        self.b += u8(6) + u16(n - 1)
        return self

    def back_h(self, n):
        self.op("clock")
        self.b += u8(7) + u8(n - 1)
        return self

    def back_years(self, n):
        self.op("clock")
        self.b += u8(8) + u8(n - 1)
        return self

    def to_boundary(self, kind, k, end=True, requests=False, delta=0):
        """Onto the window_end (or start) of a live record, +-1 ns."""
        self.op("clock")
        b = KEYS[k] | (0 if end else 0x10)
        if kind == "r":
            b |= 0x20 | (0x40 if requests else 0)
        self.b += u8(9) + u8(b)
        if (kind, k) in self.live:
            self.b += u8(delta + 1)
        return self

    def at(self, t):
        self.op("clock")
        self.b += u8(11) + u8(1) + u64(t - T_MIN)
        return self

    def extreme(self, i):
        self.op("clock")
        self.b += u8(11) + u8(0) + u8(i)
        return self

    # Holds ---------------------------------------------------------------
    def enc_ttl(self, ttl, mode):
        if mode != "hold":
            return u8(0 if ttl == 0 else 0xF1)
        g, mx = self.grain, self.ttl_max
        named = [(1, 0), (g - 1, 1), (g, 2), (g + 1, 3), (2 * g, 4),
                 (3 * g - 1, 5), (mx, 6), (mx + 1, 7), (0, 8)]
        for v, i in named:
            if ttl == v:
                return u8(i)
        if ttl == -1:
            return u8(0x89)
        if ttl == INT64_MAX:
            return u8(9)
        assert 1 <= ttl <= mx, ttl
        return u8(10) + u64(ttl - 1)

    def admit(self, charges, mode="hold", ttl=None, h=0, decision=True,
              bad_hold=False, n=None):
        """charges: [(kind 'b'|'r', key, amounts, flags)], amounts an int
        (budget) or (tokens, requests); flags: 'shadow', 'badflag',
        'badkind', 'unused'."""
        self.b += u8(HOLD_OP["admit"]) + u8(MODES[mode])
        count = len(charges) if n is None else n
        if n is None and 1 <= count <= 3:
            self.b += u8(count - 1)
        elif n is None:
            self.b += u8(0xC0 + count - 1)
        else:
            self.b += u8({0: 0xF0, 17: 0xF1, 1000: 0xF2}[n])
        for kind, key, amounts, *fl in charges:
            fl = fl[0] if fl else ""
            kb = (1 if kind == "r" else 0) | (2 if "shadow" in fl else 0)
            if "badkind" in fl:
                kb |= 0xF8
            elif "badflag" in fl:
                kb |= 0xF0
            elif "unused" in fl:
                kb |= 0xE8
            self.b += u8(kb)
            if key in ("a0b", "nul"):
                self.b += u8(KEYS[key])
            elif key in ("a", "b", "hi", "k255") and "_n" in fl:
                self.b += u8(66 + KEYS[key])  # 0x40 set, 66 % 6 == 0
            else:
                self.key(key)
            if kind == "b":
                self.b += enc_hold_amount(amounts)
            else:
                self.b += enc_hold_amount(amounts[0])
                self.b += enc_hold_amount(amounts[1])
        if ttl is None:
            ttl = self.grain if mode == "hold" else 0
        self.b += self.enc_ttl(ttl, mode)
        xb = h | (0x08 if decision else 0)
        if bad_hold:
            xb = 0xE0 | 0x10 | h
        self.b += u8(xb)
        return self

    def settle(self, h, costs, partial=False, n_delta=0, decision=True,
               null=None):
        """costs: per part 'est', '+1', '-1', '0', 'half', or amounts."""
        self.b += u8(HOLD_OP["settle"]) + u8((3 if partial else 0) | h << 2)
        fb = 0x08 if decision else 0
        if n_delta:
            fb |= 0xF0 | (1 if n_delta > 0 else 0)
        elif null == "store":
            fb |= 0xE1
        elif null == "hold":
            fb |= 0xE0
        elif null == "cost":
            fb |= 0xD0
        self.b += u8(fb)
        for c in costs:
            if c in ("est", "+1", "-1", "0", "half"):
                self.b += u8({"est": 0, "+1": 2, "-1": 3, "0": 4,
                              "half": 5}[c])
            else:
                self.b += u8(6) + enc_hold_amount(c[0])
                self.b += enc_hold_amount(c[1])
        return self

    def release(self, h, decision=True):
        self.b += u8(HOLD_OP["settle"]) + u8(2 | h << 2)
        self.b += u8(0x08 if decision else 0)
        return self

    def handle(self, what, a, b=0, off=0, x=1):
        """copy a -> b; zero, init, foreign a; corrupt a (byte off ^= x);
        size a (x odd: sizeof - 1, else 0)."""
        code = {"copy": 0, "zero": 3, "corrupt": 4, "size": 5, "init": 6,
                "foreign": 7}[what]
        self.b += u8(HOLD_OP["handle"]) + u8(a | code << 3)
        self.b += u8(b if what == "copy" else x)
        if what == "corrupt":
            self.b += u16(off)
        return self

    def grains(self, k, d=0):
        assert 1 <= k <= 4
        self.b += u8(HOLD_OP["hclock"]) + u8(0 | (k - 1) << 2) + u8(d + 1)
        return self

    def grains_back(self, k, d=0):
        self.b += u8(HOLD_OP["hclock"]) + u8(3 | (k - 1) << 2) + u8(d + 1)
        return self

    def to_slot_end(self, kind, k, slot=0, d=0):
        self.b += u8(HOLD_OP["hclock"]) + u8(1) + u8(d + 1)
        self.b += u8(KEYS[k] | (0x80 if kind == "r" else 0)) + u8(slot)
        return self

    def to_deadline(self, h, d=0):
        self.b += u8(HOLD_OP["hclock"]) + u8(2) + u8(d + 1) + u8(h)
        return self

    def bytes(self):
        return bytes(self.b)


def ops_seeds():
    s = {}
    F = ("ns", HOUR)

    p = Prog(T(2024, 1, 15, 12, 10, 30))
    p.b_upsert("a", 100, ("ns", HOUR)).b_try("a", 30).b_try("a", 30)
    p.b_try("a", 30).b_try("a", 30).b_check("a").b_bump("a", 50)
    p.b_check("a").to_boundary("b", "a", delta=-1).b_check("a")
    p.to_boundary("b", "a").b_check("a").b_try("a", 100).b_try("a", 1)
    p.fwd_h(5).sweep().b_get("a")
    s["budget_hourly"] = p

    p = Prog(T(2024, 1, 31, 10))
    p.b_upsert("a", 1000, ("M", 1), anchor=("t", T(2024, 1, 31, 10)))
    for _ in range(14):
        p.b_bump("a", 7).to_boundary("b", "a").sweep()
    p.back_years(1).b_check("a").b_bump("a", 1)
    s["budget_month_rolling_jan31"] = p

    p = Prog(T(2000, 2, 29, 6))
    p.b_upsert("hi", 5, ("M", 12), anchor=("tbl", 7))
    p.b_upsert("k255", 5, ("M", 1), anchor=("tbl", 7))
    for _ in range(6):
        p.fwd_years(1).b_bump("hi", 1).b_bump("k255", 1).sweep()
    s["budget_leap_day_anchor"] = p

    p = Prog(T(2023, 12, 31, 23, 59, 59))
    p.b_upsert("a", 10, ("M", 1), off=330, aligned=True)
    p.b_upsert("b", 10, ("M", 3), off=-480, aligned=True)
    p.r_upsert("a", (10, ("M", 6)), (None, ("M", 12)), off=1439,
               aligned=True)
    for _ in range(8):
        p.to_boundary("b", "a", delta=-1).b_bump("a", 3)
        p.to_boundary("b", "a").b_bump("a", 3).to_boundary("b", "b")
        p.b_try("b", 4).to_boundary("r", "a").r_try("a", 2, 1).sweep()
    s["budget_aligned_months_offsets"] = p

    p = Prog(T(2024, 3, 10, 1, 30))
    p.b_upsert("a", 3, ("d", 1), aligned=True, off=-480)
    p.b_upsert("b", 3, ("d", 2), aligned=True)
    p.b_upsert("hi", 3, ("w", 1), aligned=True, off=60)
    p.b_upsert("k255", 3, ("w", 3), anchor="now")
    for _ in range(10):
        for k in ("a", "b", "hi", "k255"):
            p.b_try(k, 2).to_boundary("b", k, delta=1)
        p.sweep(cb=False)
    s["budget_days_weeks"] = p

    p = Prog(T(2024, 6, 1))
    p.b_upsert("a", 1000, ("none",)).b_bump("a", 999).b_try("a", 1)
    p.b_try("a", 1).b_check("a").fwd_years(30).b_check("a").sweep()
    p.b_reset("a").b_check("a").b_upsert("a", 10, ("none",),
                                         anchor=("t", T(2030, 1, 1)))
    p.b_reset("a").b_get("a").back_years(10).b_reset("a")
    s["budget_prepaid_none"] = p

    p = Prog(T(2024, 6, 1))
    p.b_upsert("a", 10, ("min", 5)).b_bump("a", 7)
    p.b_reset("a", "minus1").b_reset("a", "plus1").b_reset("a", "other")
    p.b_reset("a").b_reset("a").fwd_s(400).b_bump("a", 2)
    p.back_h(2).b_reset("a").b_get("a").b_bump("a", 1).b_check("a")
    s["budget_reset_versions_clock_back"] = p

    p = Prog(T(2024, 6, 1))
    for _ in range(3):
        p.b_upsert("a", 10, ("s", 30)).b_bump("a", 3).b_remove("a")
        p.b_remove("a").b_get("a").b_bump("a", 1)
        p.r_upsert("a", (5, ("s", 1)), (5, ("s", 1))).r_remove("a")
    p.b_upsert("a", 10, ("s", 30)).b_reset("a", "other")
    s["remove_recreate_incarnations"] = p

    p = Prog(T(2024, 6, 1))
    p.b_upsert("a", INT64_MAX, ("d", 1)).b_bump("a", INT64_MAX)
    p.b_bump("a", 1).b_bump("a", 0).b_try("a", 1).b_check("a")
    p.b_upsert("b", INT64_MAX, ("d", 1)).b_try("b", INT64_MAX)
    p.b_try("b", 1).b_try("b", 0).fwd_d(1).b_bump("a", 1)
    p.b_try("b", INT64_MAX - 1).b_try("b", 1).b_try("b", 1)
    p.r_upsert("a", (None, ("s", 1)), (INT64_MAX, ("s", 1)))
    p.r_bump("a", INT64_MAX, INT64_MAX).r_bump("a", 1, 0).r_bump("a", 0, 1)
    p.r_try("a", 1, 0).r_try("a", 0, 1).r_try("a", 0, 0)
    s["overflow_int64_max"] = p

    p = Prog(T(2024, 6, 1))
    p.b_upsert("a", 0, ("s", 10)).b_check("a").b_try("a", 0)
    p.b_try("a", 1).b_bump("a", 0).b_bump("a", 5).b_check("a")
    p.r_upsert("a", (0, ("s", 10)), (None, ("s", 10))).r_check("a")
    p.r_try("a", 0, 5).r_try("a", 1, 0)
    s["max_zero_blocks"] = p

    p = Prog(T(2024, 6, 1))
    for k in ("NULL", "", "k256"):
        p.b_upsert(k, 10, F).b_get(k).b_bump(k, 1).b_check(k)
        p.b_try(k, 1).b_reset(k).b_remove(k)
        p.r_upsert(k, (1, F), (1, F)).r_get(k).r_bump(k, 1, 1)
        p.r_check(k).r_try(k, 1, 1).r_reset(k, "B").r_remove(k)
    p.b_upsert("a", -1, F).b_upsert("a", INT64_MIN, F)
    p.b_upsert("a", 1, F, off=1440).b_upsert("a", 1, F, off=INT32_MIN)
    for i in range(11):
        p.b_upsert("a", 1, ("bad", i))
        p.r_upsert("a", (1, ("bad", i)), (1, F))
        p.r_upsert("a", (1, F), (1, ("bad", i)))
    p.b_upsert("NULL", -1, ("bad", 0)).b_upsert("", 1, ("bad", 1))
    p.b_upsert("a", 10, F).b_upsert("a", 10, F, nocfg=True)
    p.b_bump("a", -1).b_bump("a", INT64_MIN).b_try("a", -1)
    p.b_bump("k256", -1).b_get("a", flags=0).b_get("NULL", flags=0)
    p.r_upsert("a", (-1, F), (1, ("none",))).r_upsert("a", (1, F), (-5, F))
    p.r_upsert("a", (1, ("none",)), (-5, F))
    p.r_upsert("a", (1, F), (1, F), off=-1440)
    p.r_upsert("a", (1, F), (1, F)).r_bump("a", -1, 0).r_try("a", 0, -1)
    for m in ("0", "!", "4", "bad", "all"):
        p.r_reset("a", m).r_reset("NULL", m)
    p.r_get("a", flags=0x08).r_check("a", flags=0x00)
    p.b_get("a", flags=0xF9).r_get("a", flags=0xEF).sweep(null_store=True)
    s["bad_input"] = p

    p = Prog(T(2024, 6, 1, 0, 0, 30))
    p.r_upsert("a", (1000, ("min", 1)), (10, ("s", 1)))
    for _ in range(12):
        p.r_try("a", 100, 1).r_try("a", 100, 1)
    p.r_check("a").r_bump("a", 2000, 0).r_check("a").fwd_s(1)
    p.r_check("a").r_try("a", 0, 1).to_boundary("r", "a").r_try("a", 1, 1)
    p.sweep()
    s["ratelimit_tokens_requests"] = p

    p = Prog(T(2024, 6, 1))
    p.r_upsert("b", (10, ("s", 60)), (10, F))
    p.r_bump("b", 5, 5)
    for m in ("T", "R", "B", "T!", "R!", "B!"):
        p.r_reset("b", m).r_bump("b", 3, 4).fwd_s(61)
        p.r_reset("b", m, "minus1").r_reset("b", m)
    p.to_boundary("r", "b", requests=True).r_reset("b", "R!")
    p.back_h(3).r_reset("b", "B").r_get("b")
    s["ratelimit_reset_masks"] = p

    p = Prog(T(2024, 6, 1))
    p.r_upsert("a", (None, ("s", 1)), (None, ("w", 2)))
    p.r_bump("a", 5, 5).r_check("a").r_try("a", INT64_MAX, 0)
    p.r_try("a", 1, INT64_MAX).fwd_d(15).r_check("a").sweep()
    s["ratelimit_unlimited"] = p

    p = Prog(T(2024, 1, 31, 23))
    p.r_upsert("hi", (5, ("M", 1)), (7, ("w", 1)), anchor="now")
    p.r_upsert("k255", (5, ("M", 3)), (7, ("d", 1)), aligned=True, off=-60)
    for _ in range(10):
        p.r_try("hi", 2, 3).r_try("k255", 2, 3)
        p.to_boundary("r", "hi", requests=True).sweep(cb=True, count=False)
        p.to_boundary("r", "k255").r_bump("k255", 1, 1)
    s["ratelimit_months_weeks"] = p

    p = Prog(T(2024, 6, 1, 12))
    p.b_upsert("a", 10, ("none",)).b_bump("a", 4)
    p.b_upsert("a", 10, ("ns", HOUR)).b_get("a").fwd_h(2).b_check("a")
    p.b_upsert("a", 10, ("M", 1), aligned=True).b_get("a")
    p.b_upsert("a", 3, ("w", 1), anchor=("t", T(2020, 1, 1)))
    p.b_check("a").b_bump("a", 1).b_upsert("a", 3, ("none",)).b_get("a")
    p.b_bump("a", 1).fwd_years(3).b_bump("a", 1).sweep()
    p.r_upsert("a", (5, ("s", 10)), (5, ("s", 20))).r_bump("a", 3, 3)
    p.r_upsert("a", (5, ("M", 1)), (5, ("d", 1)), aligned=True, off=600)
    p.r_get("a").fwd_d(1).r_check("a").r_bump("a", 1, 1)
    s["upsert_changes_config"] = p

    p = Prog(T(2024, 6, 1, 12))
    for k in ("a", "b", "hi", "k255"):
        p.b_upsert(k, 100, ("s", 10)).b_bump(k, 5)
        p.r_upsert(k, (100, ("s", 10)), (100, ("s", 20))).r_bump(k, 5, 6)
    p.fwd_s(10).sweep().sweep().fwd_s(10).sweep(cb=False, count=True)
    p.fwd_s(5).sweep(cb=True, count=False).fwd_years(1).sweep()
    p.back_years(2).sweep()
    s["sweep_many"] = p

    p = Prog(T(2024, 6, 1, 12))
    for i in range(8):
        p.b_upsert("a", 10, ("huge", i)).b_bump("a", 1).fwd_years(40)
        p.b_check("a").sweep().back_years(40)
        p.r_upsert("b", (10, ("huge", i)), (1, ("huge", 7 - i)),
                   aligned=bool(i & 1)).r_try("b", 1, 1)
    s["huge_periods"] = p

    p = Prog(T(2024, 6, 1, 12))
    p.b_upsert("a", 10, ("ns", 1)).b_upsert("b", 10, ("M", 1))
    p.r_upsert("a", (10, ("w", 1)), (10, ("huge", 0)), aligned=True)
    for i in range(4):
        p.extreme(i).b_bump("a", 1).b_bump("b", 1).r_bump("a", 1, 1)
        p.b_check("a").sweep().b_reset("b").r_reset("a", "B")
        p.b_upsert("hi", 1, ("M", 5), anchor=("tbl", i))
        p.b_upsert("k255", 1, ("huge", 5), anchor=("tbl", i), aligned=True)
    p.at(T(2100, 1, 1)).sweep()
    s["extreme_clock_and_anchors"] = p

    p = Prog(T(2024, 6, 1, 12))
    p.b_upsert("a", 10, ("s", 1)).r_upsert("a", (10, ("s", 1)),
                                           (10, ("s", 1)))
    p.b_bump("a", 3).r_bump("a", 4, 5).b_remove("a").r_get("a")
    p.r_bump("a", 1, 1).b_get("a").fwd_s(2).sweep()
    s["same_key_both_kinds"] = p

    p = Prog(T(2024, 6, 1, 12))
    p.b_upsert("k255", 5, ("ns", 1000)).b_upsert("hi", 5, ("ns", 1))
    for _ in range(20):
        p.b_try("k255", 2).b_try("hi", 1).fwd_ns(333)
    p.to_boundary("b", "k255", end=False, delta=-1).b_check("k255")
    p.sweep()
    s["nanosecond_periods"] = p

    p = Prog(T(2024, 6, 1, 12))
    p.b_upsert("a", 100, ("s", 7), anchor=("t", T(1901, 1, 1)))
    p.b_upsert("b", 100, ("d", 3), anchor=("t", T(2199, 12, 1)))
    p.r_upsert("hi", (5, ("M", 7)), (5, ("M", 13)),
               anchor=("t", T(1999, 8, 31, 23, 59, 59)))
    for _ in range(6):
        p.fwd_months(7).b_bump("a", 1).b_bump("b", 1).r_bump("hi", 1, 1)
        p.sweep()
    s["distant_anchors"] = p

    # Holds (tally.h "Admission"). Handles 0..7 of the harness.
    p = Prog(T(2026, 12, 3, 12), ttl_index=1)  # ttl_max 60 s, grain 20 s
    p.b_upsert("a", 1000, ("ns", HOUR), aligned=True)
    p.r_upsert("b", (500, ("min", 1)), (3, ("min", 1)), aligned=True)
    p.admit([("b", "a", 10), ("r", "b", (100, 1))], ttl=20 * NS, h=0)
    p.b_check("a").b_try("a", 900).b_try("a", 100).r_check("b")
    p.settle(0, ["+1", "-1"]).settle(0, ["est", "est"]).b_reset("a")
    p.admit([("r", "b", (100, 1)), ("b", "a", 5)], ttl=59 * NS, h=1)
    p.settle(1, ["half", "half"], partial=True)
    p.settle(1, [(100, 0), (10, 0)], partial=True).settle(1, ["0", "est"])
    p.admit([("b", "a", 5)], h=2).release(2).release(2)
    p.admit([("b", "a", 5), ("b", "a", 1)], h=3)  # one record twice
    s["hold_settle_release_partial"] = p

    p = Prog(T(2026, 12, 3, 12, 0, 50), ttl_index=1)
    p.b_upsert("a", 100, ("ns", HOUR)).r_upsert("b", (50, ("s", 30)),
                                                  (None, ("s", 30)))
    for i in range(4):
        p.admit([("b", "a", 3 + i), ("r", "b", (i, 1))],
                ttl=[1, 20 * NS, 41 * NS, 60 * NS][i], h=i)
    p.b_get("a").grains(1, -1).b_get("a").grains(1).b_bump("a", 0)
    p.b_get("a").to_slot_end("b", "a", 0, -1).sweep().to_slot_end("b", "a")
    p.sweep().settle(0, ["est", "est"]).to_deadline(3).b_check("a")
    p.grains(3).settle(3, ["+1", "est"]).settle(1, ["est", "0"])
    p.r_get("b").b_get("a")
    s["hold_expiry_slots_late"] = p

    p = Prog(T(2024, 6, 1, 12))
    p.b_upsert("a", 100, ("ns", HOUR)).b_upsert("b", 10, ("d", 1))
    p.r_upsert("hi", (1000, ("min", 1)), (2, ("min", 1)))
    p.admit([("b", "a", 50), ("b", "b", 11), ("r", "hi", (5, 3))], h=0)
    p.admit([("b", "a", 50), ("b", "k255", 1), ("b", "b", 11)], h=0)
    p.admit([("b", "a", 50), ("b", "b", 11, "shadow"),
             ("r", "hi", (5, 1))], h=0)
    p.admit([("b", "a", 60), ("r", "hi", (5, 2), "shadow")], mode="peek")
    p.admit([("b", "a", 60), ("r", "hi", (5, 2), "shadow")],
            mode="consume")
    p.admit([("b", "a", 100)], mode="consume")
    p.admit([("b", "a", 1), ("r", "hi", (0, 1))], mode="peek")
    p.admit([("b", "b", 1), ("b", "b", 2, "_n")], mode="peek")
    p.admit([("b", "a0b", 1), ("r", "nul", (1, 1))], mode="consume")
    p.admit([("b", "a", 1), ("b", "NULL", 1)]).admit([("b", "", 1)])
    p.admit([("b", "a", -1)]).admit([("b", "a", 1, "badflag")])
    p.admit([("b", "a", 1, "badkind")]).admit([("r", "hi", (1, 1),
                                                 "unused")])
    p.admit([("b", "a", 1)], mode="bad0").admit([("b", "a", 1)],
                                                 mode="bad4")
    p.admit([("b", "a", 1)], ttl=0).admit([("b", "a", 1)], ttl=-1)
    p.admit([("b", "a", 1)], ttl=60 * 10 * NS + 1)
    p.admit([("b", "a", 1)], mode="peek", ttl=1)
    p.admit([("b", "a", 1)], bad_hold=True)
    p.admit([("b", "a", 1)], mode="consume", bad_hold=True)
    p.admit([("b", "a", 1)], n=0).admit([("b", "a", 1)], n=17)
    keys = ["a", "b", "hi", "k255", "a0b", "nul"]
    p.admit([(kd, k, 1 if kd == "b" else (1, 1))
             for kd in ("b", "r") for k in keys] +
            [("b", "a", 1), ("r", "a", (1, 1)), ("b", "b", 1),
             ("r", "b", (1, 1))], mode="peek")
    s["hold_admit_several_limits"] = p

    p = Prog(T(2024, 6, 1, 12), ttl_index=6)  # ttl_max 1 h
    p.b_upsert("a", 100, ("ns", HOUR)).b_upsert("b", 100, ("ns", HOUR))
    p.admit([("b", "a", 10), ("b", "b", 20)], h=0)
    p.handle("copy", 0, 1).settle(1, ["est", "est"]).settle(0, ["est",
                                                                "est"])
    p.admit([("b", "a", 10)], h=2).handle("copy", 2, 3).release(2)
    p.release(3)
    p.admit([("b", "a", 10)], h=4).handle("corrupt", 4, off=30, x=1)
    p.release(4).handle("zero", 4).release(4).handle("init", 4).release(4)
    p.handle("foreign", 5).release(5).admit([("b", "b", 5)], h=6)
    p.handle("size", 6, x=1).release(6).handle("size", 6, x=0)
    p.release(6).admit([("b", "a", 7), ("b", "b", 7)], h=7)
    p.b_remove("a").b_upsert("a", 100, ("ns", HOUR))
    p.settle(7, ["est", "+1"]).settle(7, ["est", "est"])
    p.admit([("b", "b", 3)], h=0).settle(0, ["est", "est"], n_delta=1)
    p.settle(0, [], n_delta=-1).settle(0, ["est"], null="cost")
    p.settle(0, ["est"], null="hold").settle(0, ["est"], null="store")
    p.settle(0, [(1, 1)]).settle(0, ["est"], decision=False)
    s["hold_handles_copies_forged"] = p

    p = Prog(T(2024, 6, 1, 12), ttl_index=1)
    p.b_upsert("a", 20, ("s", 30)).r_upsert("a", (20, ("s", 45)),
                                             (3, ("s", 45)))
    p.admit([("b", "a", 10), ("r", "a", (5, 1))], ttl=60 * NS, h=0)
    p.grains(2).b_bump("a", 5).r_bump("a", 1, 0).grains_back(4)
    p.admit([("b", "a", 5), ("r", "a", (5, 1))], ttl=1, h=1)
    p.b_get("a").grains(4).b_check("a").sweep()
    p.settle(1, ["est", "est"]).settle(0, ["0", "0"]).grains_back(2)
    p.admit([("b", "a", 5)], ttl=1, h=2).b_get("a")
    p.b_reset("a").r_reset("a", "B").grains(1, 1).b_reset("a")
    p.settle(2, ["est"]).b_get("a")
    s["hold_clock_back_resets"] = p

    p = Prog(T(2024, 6, 1, 12), ttl_index=3)  # ttl_max 3 ns, grain 1 ns
    p.r_upsert("a", (None, ("s", 1)), (2, ("s", 1)))
    p.b_upsert("b", 3, ("ns", 1000))
    for i in range(3):
        p.admit([("r", "a", (0, 1)), ("b", "b", 1)], ttl=1 + i, h=i)
        p.fwd_ns(1)
    p.admit([("r", "a", (0, 1))], h=3).r_check("a").b_check("b")
    p.settle(0, ["est", "est"]).fwd_ns(2).release(1).sweep()
    p.to_deadline(2, -1).release(2).r_get("a")
    p.admit([("r", "a", (INT64_MAX, 0))], h=4).r_check("a")
    p.admit([("b", "b", 1)], h=5).extreme(3).b_bump("b", 0)
    s["hold_nanosecond_grain"] = p

    p = Prog(T(2024, 6, 1, 12), ttl_index=0)
    p.r_upsert("a", (None, ("min", 1)), (3, ("min", 1)))  # in flight
    for i in range(5):
        p.admit([("r", "a", (0, 1))], ttl=(i + 1) * 100 * NS, h=i)
    p.r_check("a").settle(0, [(0, 0)]).settle(1, [(0, 0)])
    p.admit([("r", "a", (0, 1))], h=1).fwd_h(1).r_check("a")
    p.admit([("r", "a", (0, 1))], h=5).r_get("a")
    s["hold_concurrency_limit"] = p

    p = Prog(T(2024, 1, 31, 23, 59), ttl_index=6)
    p.b_upsert("a", 50, ("M", 1), aligned=True)
    p.r_upsert("b", (30, ("min", 1)), (5, ("min", 1)), aligned=True)
    p.admit([("b", "a", 20), ("r", "b", (10, 1))], ttl=3600 * NS, h=0)
    p.b_bump("a", 20).to_boundary("b", "a").b_check("a").b_try("a", 10)
    p.b_try("a", 11).b_upsert("a", 60, ("M", 1), aligned=True)
    p.r_upsert("b", (40, ("min", 1)), (5, ("min", 1)), aligned=True)
    p.b_reset("a").r_reset("b", "B").settle(0, ["+1", "+1"])
    p.admit([("b", "a", 60)], mode="peek").admit([("b", "a", 61)],
                                                  mode="peek")
    p.b_upsert("a", 50, ("none",)).b_bump("a", 40)
    p.admit([("b", "a", 20)], mode="peek").sweep()
    s["hold_windows_upserts_resets"] = p

    # Random programs: valid ops mostly on live keys, seeded for stability.
    rnd = random.Random(20240601)
    for n in range(12):
        p = Prog(T(1900 + rnd.randrange(300), 1 + rnd.randrange(12),
                   1 + rnd.randrange(28), rnd.randrange(24)))
        periods = [("s", 1), ("s", 60), ("min", 5), ("ns", HOUR), ("d", 1),
                   ("w", 1), ("w", 2), ("M", 1), ("M", 3), ("M", 12),
                   ("none",), ("d", 7)]
        for _ in range(60 + rnd.randrange(60)):
            k = rnd.choice(["a", "b", "hi", "k255"])
            c = rnd.randrange(20)
            if c < 2:
                per = rnd.choice(periods)
                p.b_upsert(k, rnd.choice([0, 1, 5, 100, INT64_MAX]), per,
                           anchor=rnd.choice([None, None, "now"]),
                           off=rnd.choice([0, 60, -330, 1439]),
                           aligned=rnd.random() < 0.5)
            elif c < 4:
                lim = [(rnd.choice([None, 0, 3, 50]),
                        rnd.choice(periods[:-3] + [("M", 2)]))
                       for _ in range(2)]
                p.r_upsert(k, lim[0], lim[1], aligned=rnd.random() < 0.5,
                           off=rnd.choice([0, -60, 600]))
            elif c < 6:
                p.b_try(k, rnd.choice([0, 1, 2, 5, 10]))
            elif c < 8:
                p.b_bump(k, rnd.choice([0, 1, 3, 50]))
            elif c < 10:
                p.r_try(k, rnd.choice([0, 1, 2, 10]), rnd.choice([0, 1]))
            elif c < 11:
                p.r_bump(k, rnd.choice([0, 5]), rnd.choice([0, 1]))
            elif c < 12:
                p.b_reset(k, rnd.choice(["right", "right", "minus1"]))
            elif c < 13:
                p.r_reset(k, rnd.choice(list(MASKS)[:6]),
                          rnd.choice(["right", "right", "plus1"]))
            elif c < 14:
                p.sweep(cb=rnd.random() < 0.5, count=rnd.random() < 0.5)
            elif c < 15:
                if rnd.random() < 0.3:
                    p.b_remove(k)
                else:
                    p.r_remove(k) if rnd.random() < 0.3 else p.b_check(k)
            elif c < 17:
                kind = rnd.choice(["b", "r"])
                p.to_boundary(kind, k, requests=rnd.random() < 0.5,
                              delta=rnd.choice([-1, 0, 0, 1]))
            elif c < 18:
                rnd.choice([lambda: p.fwd_s(rnd.randrange(1, 5000)),
                            lambda: p.fwd_h(rnd.randrange(1, 50)),
                            lambda: p.fwd_d(rnd.randrange(1, 40)),
                            lambda: p.fwd_months(rnd.randrange(1, 14))])()
            elif c < 19:
                rnd.choice([lambda: p.back_ns(rnd.randrange(1, 1000)),
                            lambda: p.back_h(rnd.randrange(1, 30))])()
            else:
                p.r_check(k)
        s["random_%02d" % n] = p
    sliding_seeds(s)
    return {k: v.bytes() for k, v in s.items()}


def sliding_seeds(s):
    """Sliding counters (TALLY_ALGORITHM_SLIDING): boundaries, upserts
    between algorithms and lattices, the 2^62 edges, holds."""
    A = (1 << 62) - 1
    minute = ("ns", 60 * NS)

    p = Prog(T(2024, 1, 15, 12, 10, 30))
    p.r_upsert("a", (100, minute, "S"), (None, ("ns", HOUR), "S"))
    for _ in range(6):
        p.r_try("a", 30, 1).r_try("a", 30, 1).r_check("a")
        p.admit([("r", "a", (50, 1))], mode="peek")
        p.to_boundary("r", "a", delta=-1).r_try("a", 40, 1)
        p.to_boundary("r", "a").r_try("a", 40, 1).r_get("a")
        p.admit([("r", "a", (10, 0))], mode="peek")
        p.fwd_s(20).r_try("a", 20, 0)
    p.fwd_h(5).sweep().r_get("a")
    s["sliding_basic"] = p

    # Export: both kinds, keys with NUL bytes, holds, due windows shown
    # unrolled, removed records gone, in calls of every size.
    p = Prog(T(2024, 2, 29, 23, 59, 59), ttl_index=1)
    p.export()
    p.b_upsert("a", 100, ("ns", HOUR)).r_upsert("b", (10, minute, "S"),
                                               (5, ("s", 30)))
    p.b_upsert("hi", 7, ("M", 1)).r_upsert("a", (None, ("d", 1)),
                                          (3, ("w", 1)))
    p.export(1).export(2, stop=True)
    p.admit([("r", "b", (4, 1)), ("b", "a", 10)], mode="hold", h=0)
    p.b_bump("a", 5).r_bump("a", 2, 1).export(3)
    p.fwd_h(2).export(0, stop=True).sweep().export(1)
    p.b_remove("hi").export(2).settle(0, ["est"]).export(3, stop=True)
    s["export_walks"] = p

    p = Prog(T(2024, 3, 1, 0, 0, 1))
    p.r_upsert("a", (10, minute, "S"), (5, ("w", 1), "S"), aligned=True)
    p.r_bump("a", 9, 4).to_boundary("r", "a").r_try("a", 5, 1)
    p.r_upsert("a", (10, minute, "F"), (5, ("w", 1), "S"), aligned=True)
    p.r_get("a")
    p.r_upsert("a", (10, minute, "S"), (5, ("w", 2), "S"), aligned=True)
    p.r_bump("a", 3, 3).fwd_s(61).r_get("a")
    p.r_upsert("a", (10, ("min", 2), "S"), (5, ("w", 2), "S"), anchor="now")
    p.r_reset("a", "B").r_get("a")
    p.r_upsert("a", (10, ("M", 1), "S"), (5, ("w", 1), "bad2"))
    p.r_upsert("a", (10, minute, "badmax"), (5, ("w", 1)))
    p.r_upsert("a", (A, ("huge", 0x80), "S"), (A + 1, ("huge", 0x81), "S"))
    p.r_upsert("a", (A, ("huge", 0x80), "S"), (A, ("huge", 0x84), "S"))
    p.r_upsert("a", (A, ("huge", 0x80), "S"), (A, ("huge", 0x83), "S"))
    p.r_bump("a", A, A).r_bump("a", 0, 1).r_try("a", 1, 0)
    p.admit([("r", "a", (1, 1), "shadow")], mode="hold")
    p.fwd_years(50).r_get("a").sweep().r_get("a")
    s["sliding_upserts_edges"] = p

    p = Prog(T(2024, 6, 1), ttl_index=1)
    p.r_upsert("a", (10, minute, "S"), (3, ("s", 30), "S"))
    p.b_upsert("a", 100, ("ns", HOUR))
    for _ in range(5):
        p.admit([("r", "a", (4, 1)), ("b", "a", 10)], mode="hold", h=0)
        p.admit([("r", "a", (4, 1))], mode="hold", h=1)
        p.grains(1).admit([("r", "a", (4, 1))], mode="peek")
        p.settle(0, ["+1", "est"]).release(1)
        p.to_boundary("r", "a", delta=-1)
        p.admit([("r", "a", (6, 1))], mode="consume")
        p.to_boundary("r", "a", delta=1)
        p.admit([("r", "a", (6, 1))], mode="peek")
    s["sliding_holds"] = p



def period_seeds():
    texts = [
        "30s", "5m", "1h", "1d", "1w", "1M", "1Q", "1Y", "1h30m", "500ms",
        "250us", "10ns", "", "none", "0s", "-1h", "99999999999999999999Y",
        "1h1M", "1Y6M", "2w", "1w1d", "1d1w", "9223372036854775807ns",
        "9223372036854775808ns", "15250w", "15251w", "120000M", "10000Y",
        "10001Y", "40000Q", "40001Q", "1h0m", "0h0m", "0w", "0M",
        "1d2h3m4s5ms6us7ns", "30m1h", "1h1h", "1ms1m", "1 h", "+1h", "01h",
        "1H", "1mss", "NONE", "none ", "1.5h", "h", "1",
        "106751d23h47m16s854ms775us807ns", "106751d23h47m16s854ms775us808ns",
        "0000000000000000000000000000001s", "1w0d", "52w", "12M", "24M",
        "3M", "7d", "1440m", "86400s", "1000ms", "1000000us",
    ]
    out = {}
    for i, t in enumerate(texts):
        name = "t%02d_%s" % (i, "".join(c if c.isalnum() else "_"
                                        for c in t) or "empty")
        out[name] = t.encode()
    raws = [(1, 1), (INT64_MAX, 1), (0, 0), (0, 1), (15250, 2), (15251, 2),
            (120000, 3), (120001, 3), (12, 3), (36, 3), (5, 0), (-1, 1),
            (DAY + HOUR + 1, 1)]
    for i, (count, unit) in enumerate(raws):
        out["raw%02d" % i] = struct.pack("<q", count) + bytes([unit])
    return out


def write(dirpath, seeds):
    os.makedirs(dirpath, exist_ok=True)
    for name, data in sorted(seeds.items()):
        with open(os.path.join(dirpath, name), "wb") as f:
            f.write(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "corpus"))
    args = ap.parse_args()
    ops = ops_seeds()
    per = period_seeds()
    write(os.path.join(args.out, "ops"), ops)
    write(os.path.join(args.out, "period"), per)
    print("%d ops seeds, %d period seeds under %s"
          % (len(ops), len(per), args.out))


if __name__ == "__main__":
    main()
