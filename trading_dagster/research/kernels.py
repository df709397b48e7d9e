"""The research sweeps' numba kernels, verbatim from `research/sweep.py` (`_sma_anchored`, `_floor_qty`,
`_kernel`) and `research/threshold_sweep.py` (`_event_kernel`); their conventions are described there.

Their own module so that numba (and llvmlite, and the `coverage` package numba imports) is loaded only when a
sweep, a walk-forward or a threshold sweep actually runs: `sweep.py` and `threshold_sweep.py` import this
module inside the functions that call a kernel, never at their own import, so a run worker that loads the code
location for the daily pipeline never imports numba (tested: trading_dagster_tests/research/test_lazy_imports.py).
Compiled with the same options as before (`cache=True`; `parallel=True` for the two kernels).
"""

import numba
import numpy as np


@numba.njit(cache=True)
def _sma_anchored(close, cal, period, block, warmup, out):  # pragma: no cover - compiled
    """TA-Lib's SMA (same additions in the same order) of one symbol's bars, anchored per calendar block."""
    n = close.size
    out[:n] = np.nan
    if n == 0:
        return
    s = 0
    e0 = 0
    for b in range(cal[0] // block, cal[n - 1] // block + 1):
        anchor = max(0, b * block - warmup)
        while s < n and cal[s] < anchor:
            s += 1
        while e0 < n and cal[e0] < b * block:
            e0 += 1
        e1 = e0
        while e1 < n and cal[e1] < (b + 1) * block:
            e1 += 1
        if e1 > e0 and e1 - s >= period:
            total = 0.0
            i = s
            while i < s + period - 1:
                total += close[i]
                i += 1
            trailing = s
            while i < e1:
                total += close[i]
                tmp = total
                total -= close[trailing]
                trailing += 1
                if i >= e0:
                    out[i] = tmp / period
                i += 1
        e0 = e1


@numba.njit(cache=True)
def _floor_qty(x, fractional):  # pragma: no cover - compiled
    if fractional:
        return np.floor(x * 1e9) / 1e9
    return np.floor(x)


@numba.njit(parallel=True, cache=True)
def _kernel(
    offsets,
    cal,
    row,
    open_,
    close,
    periods,
    fast_idx,
    slow_idx,
    n_rows,
    block,
    warmup,
    up,
    down,
    notional,
    size_on_fill,
    fractional,
    fees,
    slip,
    n_chunks,
):  # pragma: no cover - compiled
    n_pairs = fast_idx.size
    cash = np.zeros((n_chunks, n_pairs, n_rows))
    value = np.zeros((n_chunks, n_pairs, n_rows))
    orders = np.zeros((n_chunks, n_pairs), dtype=np.int64)
    buys = np.zeros((n_chunks, n_pairs), dtype=np.int64)
    traded = np.zeros((n_chunks, n_pairs))
    m = offsets.size - 1
    for c in numba.prange(n_chunks):
        lo = m * c // n_chunks
        hi = m * (c + 1) // n_chunks
        longest = 0
        for j in range(lo, hi):
            longest = max(longest, offsets[j + 1] - offsets[j])
        sma = np.empty((periods.size, longest))
        for j in range(lo, hi):
            a = offsets[j]
            k_n = offsets[j + 1] - a
            if k_n == 0:
                continue
            for q in range(periods.size):
                _sma_anchored(close[a : a + k_n], cal[a : a + k_n], periods[q], block, warmup, sma[q])
            for p in range(n_pairs):
                fast = sma[fast_idx[p]]
                slow = sma[slow_idx[p]]
                qty = 0.0
                pending = 0
                pending_qty = 0.0
                for k in range(k_n):
                    r = row[a + k]
                    if r < 0:
                        continue
                    if pending == 1:
                        price = open_[a + k] * (1.0 + slip)
                        bought = pending_qty if not size_on_fill else _floor_qty(notional / price, fractional)
                        if bought > 0:
                            traded_value = bought * price
                            cash[c, p, r] -= traded_value + traded_value * fees
                            qty = bought
                            orders[c, p] += 1
                            buys[c, p] += 1
                            traded[c, p] += traded_value
                    elif pending == -1:
                        price = open_[a + k] * (1.0 - slip)
                        traded_value = qty * price
                        cash[c, p, r] += traded_value - traded_value * fees
                        qty = 0.0
                        orders[c, p] += 1
                        traded[c, p] += traded_value
                    pending = 0
                    if qty > 0:
                        until = row[a + k + 1] if k + 1 < k_n else n_rows
                        held = qty * close[a + k]
                        for t in range(r, until):
                            value[c, p, t] += held
                    # the signal at D's close, filled at the next session's open if the symbol has a bar there
                    if (
                        r >= 1
                        and k >= 1
                        and row[a + k - 1] == r - 1
                        and k + 1 < k_n
                        and row[a + k + 1] == r + 1
                    ):
                        f, s, fp, sp = fast[k], slow[k], fast[k - 1], slow[k - 1]
                        if qty == 0:
                            if fp <= sp * up and f > s * up:
                                if size_on_fill:
                                    pending = 1
                                else:
                                    pending_qty = _floor_qty(notional / close[a + k], fractional)
                                    if pending_qty > 0:
                                        pending = 1
                        elif fp >= sp * down and f < s * down:
                            pending = -1
    return cash.sum(axis=0), value.sum(axis=0), orders.sum(axis=0), buys.sum(axis=0), traded.sum(axis=0)


@numba.njit(parallel=True, cache=True)
def _event_kernel(
    offsets,
    row,
    open_,
    close,
    entries,
    exits,
    entry_idx,
    exit_idx,
    stops,
    takes,
    stop_idx,
    take_idx,
    high,
    low,
    open_floor,
    n_rows,
    notional,
    size_on_fill,
    fractional,
    fees,
    slip,
    n_chunks,
):  # pragma: no cover - compiled
    n_sets = entry_idx.size
    cash = np.zeros((n_chunks, n_sets, n_rows))
    value = np.zeros((n_chunks, n_sets, n_rows))
    orders = np.zeros((n_chunks, n_sets), dtype=np.int64)
    buys = np.zeros((n_chunks, n_sets), dtype=np.int64)
    traded = np.zeros((n_chunks, n_sets))
    m = offsets.size - 1
    for c in numba.prange(n_chunks):
        for j in range(m * c // n_chunks, m * (c + 1) // n_chunks):
            a = offsets[j]
            k_n = offsets[j + 1] - a
            for p in range(n_sets):
                buy = entries[entry_idx[p]]
                sell = exits[exit_idx[p]]
                si = stop_idx[p]
                ti = take_idx[p]
                qty = 0.0
                pending = 0
                pending_qty = 0.0
                signal_bar = 0
                lot_stop = np.nan
                lot_take = np.nan
                for k in range(k_n):
                    i = a + k
                    r = row[i]
                    if r < 0:
                        continue
                    if pending == 1:
                        price = open_[i] * (1.0 + slip)
                        bought = pending_qty if not size_on_fill else _floor_qty(notional / price, fractional)
                        if bought > 0:
                            traded_value = bought * price
                            cash[c, p, r] -= traded_value + traded_value * fees
                            qty = bought
                            orders[c, p] += 1
                            buys[c, p] += 1
                            traded[c, p] += traded_value
                            # the bracket of the entry: its levels were set at the signal bar's close
                            lot_stop = stops[si, signal_bar] if si >= 0 else np.nan
                            lot_take = takes[ti, signal_bar] if ti >= 0 else np.nan
                    elif pending == -1:
                        price = open_[i] * (1.0 - slip)
                        traded_value = qty * price
                        cash[c, p, r] += traded_value - traded_value * fees
                        qty = 0.0
                        orders[c, p] += 1
                        traded[c, p] += traded_value
                    pending = 0
                    # exits on the bar after the open's fills, the entry's own bar included (domain/exits.py)
                    if qty > 0 and (lot_stop == lot_stop or lot_take == lot_take):
                        o, hi, lo = open_[i], high[i], low[i]
                        exit_price = -1.0
                        if o > 0 and hi > 0 and lo > 0:  # NaN (no high / low) compares False: no exit
                            if lot_stop == lot_stop and o <= lot_stop:
                                exit_price = o * (1.0 - slip)
                            elif lot_take == lot_take and o >= lot_take:
                                exit_price = open_floor[i]
                            elif lot_stop == lot_stop and lo <= lot_stop:
                                exit_price = lot_stop * (1.0 - slip)
                            elif lot_take == lot_take and hi >= lot_take:
                                exit_price = lot_take
                        if exit_price > 0:
                            traded_value = qty * exit_price
                            cash[c, p, r] += traded_value - traded_value * fees
                            qty = 0.0
                            orders[c, p] += 1
                            traded[c, p] += traded_value
                    if qty > 0:
                        until = row[i + 1] if k + 1 < k_n else n_rows
                        held = qty * close[i]
                        for t in range(r, until):
                            value[c, p, t] += held
                    # the signal at D's close fills at the next session's open if the symbol has a bar there
                    if k + 1 < k_n and row[i + 1] == r + 1:
                        if qty == 0:
                            if buy[i]:
                                signal_bar = i
                                if size_on_fill:
                                    pending = 1
                                else:
                                    pending_qty = _floor_qty(notional / close[i], fractional)
                                    if pending_qty > 0:
                                        pending = 1
                        elif sell[i]:
                            pending = -1
    return cash.sum(axis=0), value.sum(axis=0), orders.sum(axis=0), buys.sum(axis=0), traded.sum(axis=0)
