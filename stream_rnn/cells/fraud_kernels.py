"""Compiled pieces of the multi-entity fraud scorer: per-entity aggregates, delayed-label
tallies, a small supervised head, and a keyed recurrent pass that also hands back each
entity's hidden state.

Everything here works on plain arrays so that a batch of events runs in a few compiled
calls and the per-event path (``score_one``/``learn_one``) runs the very same functions on
one row, which is what makes the two paths give identical numbers.

Per key field (cards, terminals, ...) each entity owns one row of ``agg`` (float64, columns
laid out by :func:`agg_columns`) and one row of ``prep`` (the recurrent network's running
input statistics). Exponentially weighted (EW) sums are stored as of a reference time and
decayed lazily when read, so they cost nothing between an entity's events.

Delayed labels are tallied by the *transaction* time of the labelled event, not by the
moment the label arrives: an EW sum referenced at time ``r`` can absorb an item from any
earlier or later time, so the tallies do not depend on how finely reveals are interleaved.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.cells import kernels as K
from stream_rnn.cells._flags import jit

__all__ = [
    "N_CLOCK",
    "N_AMOUNT",
    "N_PREP",
    "PREP_INPUTS",
    "agg_columns",
    "entity_feature_count",
    "rnn_feature_count",
    "clock_features",
    "prepare_inputs",
    "rnn_pass",
    "rnn_features",
    "entity_features",
    "commit_event",
    "apply_reveal",
    "head_init",
    "head_forward",
    "head_learn",
    "score_learn_batch",
    "score_row",
    "score_single",
]

_DAY = 86400.0
#: Clock features: hour of day (sin, cos), weekend flag, night (00:00-06:00) flag.
N_CLOCK = 4
#: Amount features: log1p(amount), then hinges max(0, log1p(amount) - k) at whole log units
#: k = 2..6 (amounts of about 7 to 400), so the head can bend its response to the amount.
N_AMOUNT = 6
#: Columns of ``prep``: last log-amount, last ts, running mean, running var, count.
N_PREP = 5
#: Recurrent inputs: previous scaled log-amount, log gap since it, hour (sin, cos), weekend.
PREP_INPUTS = 5
_Z_CLIP = 10.0
_LOGVAR_CLIP = 12.0
# Standardized head inputs are clipped here: wide enough that a rare, extreme value (a
# huge amount) still stands out from a merely unusual one.
_INPUT_CLIP = 50.0


def agg_columns(n_windows: int) -> dict[str, int]:
    """Column offsets of one entity's ``agg`` row for ``n_windows`` EW time constants.

    Examples
    --------
    >>> cols = agg_columns(3)
    >>> cols["cnt"], cols["lab_fraud"], cols["width"]
    (2, 16, 20)
    """
    W = n_windows
    cols = {"ts": 0, "n": 1, "cnt": 2, "sum": 2 + W, "lab_ref": 2 + 2 * W,
            "lab_n": 3 + 2 * W, "lab_nf": 4 + 2 * W, "lab_last": 5 + 2 * W,
            "lab_first": 6 + 2 * W, "lab_cnt": 7 + 2 * W, "lab_fraud": 7 + 3 * W,
            "gen": 7 + 4 * W}
    cols["width"] = 8 + 4 * W
    return cols


def entity_feature_count(n_windows: int) -> int:
    """Head features one key field contributes from its aggregates and label tallies."""
    return 2 + 2 * n_windows + 6 + n_windows


def rnn_feature_count(n_state: int) -> int:
    """Head features one key field contributes from its recurrent network when ``n_state``
    hidden units are passed on."""
    return 4 + n_state


# ---------------------------------------------------------------- event-level helpers


@jit
def clock_features(ts, out):
    """Hour of day as a point on the circle, weekend and night flags (UTC)."""
    day_pos = (ts % _DAY) / _DAY
    out[0] = math.sin(2.0 * math.pi * day_pos)
    out[1] = math.cos(2.0 * math.pi * day_pos)
    # 1970-01-01 was a Thursday: day index 2 and 3 (mod 7) are Saturday and Sunday.
    dow = int(math.floor(ts / _DAY)) % 7
    out[2] = 1.0 if (dow == 2 or dow == 3) else 0.0
    out[3] = 1.0 if day_pos < 0.25 else 0.0


@jit
def _decay(dt, tau):
    return math.exp(-dt / tau) if dt > 0.0 else 1.0


@jit
def _ew_add(ref, cnt, acc, t, value, taus, c_cnt, c_acc, row):
    """Add ``(1, value)`` stamped ``t`` to EW sums referenced at ``row[ref]``; the reference
    moves forward to ``t`` if ``t`` is later, an earlier item is added already decayed."""
    r = row[ref]
    if cnt == 0.0 or t > r:
        for w in range(taus.shape[0]):
            f = _decay(t - r, taus[w]) if cnt > 0.0 else 0.0
            row[c_cnt + w] = row[c_cnt + w] * f + 1.0
            if c_acc >= 0:
                row[c_acc + w] = row[c_acc + w] * f + value
        row[ref] = t
    else:
        for w in range(taus.shape[0]):
            f = _decay(r - t, taus[w])
            row[c_cnt + w] += f
            if c_acc >= 0:
                row[c_acc + w] += f * value


# ---------------------------------------------------------------- recurrent inputs


@jit
def _scaled(x, mean, var, n, clip):
    if n < 1.0:
        return 0.0
    sd = math.sqrt(var) if n >= 2.0 else 1.0
    sd = max(sd, 1e-3)
    z = (x - mean) / sd
    return min(max(z, -clip), clip)


@jit
def prepare_inputs(slots, resets, ts, la, prep, memory, clip, U, Y, valid):
    """Recurrent inputs and targets of one key field for a batch, committing each event.

    For event ``i`` of entity ``slots[i]``: ``U[i]`` holds the entity's previous
    log-amount (scaled by the entity's running statistics), the log of the gap since
    that event in hours, and the event's clock; ``Y[i]`` is the event's own log-amount,
    scaled the same way; ``valid[i]`` is False for an entity's first event. Then the event
    is folded into ``prep``. ``resets[i]`` zeroes the row first (a new key took it).
    A slot of -1 means "not kept" (scoring an unknown key): nothing is committed.
    """
    clock = np.empty(N_CLOCK)
    for i in range(slots.shape[0]):
        s = slots[i]
        if resets[i]:
            prep[s, :] = 0.0
        row = prep[s]
        n = row[4]
        valid[i] = n > 0.0
        gap_h = max(ts[i] - row[1], 0.0) / 3600.0 if n > 0.0 else 0.0
        clock_features(ts[i], clock)
        U[i, 0] = _scaled(row[0], row[2], row[3], n, clip)
        U[i, 1] = math.log1p(gap_h) - 2.0
        U[i, 2] = clock[0]
        U[i, 3] = clock[1]
        U[i, 4] = clock[2]
        Y[i, 0] = _scaled(la[i], row[2], row[3], n, clip)
        # Running mean and variance, Welford while young, then an EW with ``memory``.
        n1 = n + 1.0
        alpha = max(1.0 / n1, 1.0 / memory) if memory > 0 else 1.0 / n1
        d = la[i] - row[2]
        row[2] += alpha * d
        row[3] = (1.0 - alpha) * (row[3] + alpha * d * d)
        row[4] = n1
        row[0] = la[i]
        row[1] = ts[i]


@jit
def rnn_features(out, y, state_top, H, feat):
    """Head features from one recurrent step: validity, surprise ``(y - mu) / sigma``,
    forecast mean and log-variance, then the top layer's hidden state ``h``."""
    lv = min(max(out[1], -_LOGVAR_CLIP), _LOGVAR_CLIP)
    z = (y - out[0]) * math.exp(-0.5 * lv)
    feat[0] = 1.0
    feat[1] = min(max(z, -_Z_CLIP), _Z_CLIP)
    feat[2] = out[0]
    feat[3] = lv
    for j in range(H):
        feat[4 + j] = state_top[j]


@jit
def rnn_pass(cfg, hyper, offs, theta, grad, opt, counters, rng,
             ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
             st_state, st_snap, st_ru, st_ry, st_len, st_pending,
             slots, resets, U, Y, valid, n_state, feats):
    """Keyed truncated-BPTT pass (as :func:`kernels.run_batch`) that also writes each
    event's head features: the forecast of the event, its surprise and the entity's hidden
    state after the step, i.e. what the entity's history looked like when it was scored.

    ``n_state`` hidden units (the first ones; 0 for none) go into the features. Invalid
    events (an entity's first) neither step nor learn and get all-zero features.
    """
    L = cfg[K.C_LAYERS]
    out = np.empty(cfg[K.C_OUT], dtype=theta.dtype)
    stats = np.zeros(2, dtype=ws_tmp.dtype)
    for i in range(slots.shape[0]):
        slot = slots[i]
        if resets[i]:
            K.reset_slot(slot, st_state, st_snap, st_len, st_pending)
        if not valid[i]:
            feats[i, :] = 0.0
            continue
        K.learn_slot(cfg, hyper, offs, theta, grad, opt, counters, rng,
                     ws_x, ws_g, ws_aux, ws_s, ws_o, ws_m, ws_d, ws_tmp,
                     st_state, st_snap, st_ru, st_ry, st_len, st_pending,
                     slot, U[i], Y[i], out, stats)
        rnn_features(out, Y[i, 0], st_state[slot, L - 1], n_state, feats[i])


# ---------------------------------------------------------------- aggregates and labels


@jit
def entity_features(row, ts, la, taus, W, use_agg, feat):
    """Features of one entity at time ``ts`` (read-only): activity and amount aggregates
    (zeros when ``use_agg`` is False), then delayed-label tallies.

    Activity: new-entity flag, log gap since its last event (hours), ``log1p`` of the EW
    event counts and the event's log-amount minus the EW mean log-amount, per time constant.
    Labels: any label seen, ``log1p`` of labels seen, any fraud seen, ``log1p`` of frauds
    seen, ``log1p`` of the age in days of the latest and of the earliest revealed fraud
    (by transaction time), then the EW fraud rate per time constant.
    """
    c_cnt = 2
    c_sum = 2 + W
    c_lref = 2 + 2 * W
    c_lcnt = 7 + 2 * W
    c_lfr = 7 + 3 * W
    k = 0
    n = row[1]
    if use_agg:
        feat[0] = 1.0 if n == 0.0 else 0.0
        feat[1] = math.log1p(max(ts - row[0], 0.0) / 3600.0) if n > 0.0 else 0.0
        for w in range(W):
            c = row[c_cnt + w] * _decay(ts - row[0], taus[w]) if n > 0.0 else 0.0
            feat[2 + w] = math.log1p(c)
            feat[2 + W + w] = la - row[c_sum + w] / row[c_cnt + w] if n > 0.0 else 0.0
    else:
        for j in range(2 + 2 * W):
            feat[j] = 0.0
    k = 2 + 2 * W
    n_lab = row[c_lref + 1]
    n_fraud = row[c_lref + 2]
    feat[k] = 1.0 if n_lab > 0.0 else 0.0
    feat[k + 1] = math.log1p(n_lab)
    feat[k + 2] = 1.0 if n_fraud > 0.0 else 0.0
    feat[k + 3] = math.log1p(n_fraud)
    # Ages of the latest and the earliest revealed fraud tell a running compromise from
    # one that has likely ended.
    feat[k + 4] = math.log1p(max(ts - row[c_lref + 3], 0.0) / _DAY) if n_fraud > 0.0 else 0.0
    feat[k + 5] = math.log1p(max(ts - row[c_lref + 4], 0.0) / _DAY) if n_fraud > 0.0 else 0.0
    for w in range(W):
        c = row[c_lcnt + w]
        feat[k + 6 + w] = row[c_lfr + w] / c if c > 1e-12 else 0.0


@jit
def commit_event(row, ts, la, taus, W):
    """Fold one event into an entity's activity aggregates."""
    n = row[1]
    dt = ts - row[0]
    for w in range(W):
        f = _decay(dt, taus[w]) if n > 0.0 else 0.0
        row[2 + w] = row[2 + w] * f + 1.0
        row[2 + W + w] = row[2 + W + w] * f + la
    if n == 0.0 or ts > row[0]:
        row[0] = ts
    row[1] = n + 1.0


@jit
def apply_reveal(row, tx_ts, label, taus, W):
    """Tally one revealed label of a transaction made at ``tx_ts`` into an entity's row."""
    c_lref = 2 + 2 * W
    c_lcnt = 7 + 2 * W
    c_lfr = 7 + 3 * W
    # The fraud EW rides on the count's reference time, so add to both in one pass.
    r = row[c_lref]
    first = row[c_lref + 1] == 0.0
    if first or tx_ts > r:
        for w in range(W):
            f = _decay(tx_ts - r, taus[w]) if not first else 0.0
            row[c_lcnt + w] = row[c_lcnt + w] * f + 1.0
            row[c_lfr + w] = row[c_lfr + w] * f + label
        row[c_lref] = tx_ts
    else:
        for w in range(W):
            f = _decay(r - tx_ts, taus[w])
            row[c_lcnt + w] += f
            row[c_lfr + w] += f * label
    row[c_lref + 1] += 1.0
    if label > 0.5:
        if row[c_lref + 2] == 0.0 or tx_ts > row[c_lref + 3]:
            row[c_lref + 3] = tx_ts
        if row[c_lref + 2] == 0.0 or tx_ts < row[c_lref + 4]:
            row[c_lref + 4] = tx_ts
        row[c_lref + 2] += 1.0


# ---------------------------------------------------------------- supervised head
#
# theta: w (F) and b (1) of a linear part, then (when Hh > 0) W1 (F, Hh) row-major, b1 (Hh),
# w2 (Hh) of a tanh layer added to it: logit = w.x + b + w2.tanh(W1 x + b1). The linear
# part keeps monotone effects (a larger amount) easy to learn however rare they are.
# Inputs are standardized by running statistics of the examples the head has been trained
# on (``norm`` rows: mean, var, count), updated at training time only.


def head_init(n_features: int, hidden: int, seed: int, prior: float = 0.5) -> np.ndarray:
    """Make initial head weights: zero linear and output weights, a bias giving
    probability ``prior``, Xavier-uniform ``W1``.

    Examples
    --------
    >>> head_init(3, 4, seed=0).shape
    (24,)
    >>> head_init(3, 0, seed=0).shape
    (4,)
    """
    rng = np.random.default_rng(seed)
    linear = np.zeros(n_features + 1)
    linear[n_features] = math.log(prior / (1.0 - prior))
    if hidden == 0:
        return linear
    limit = math.sqrt(6.0 / (n_features + hidden))
    w1 = rng.uniform(-limit, limit, size=n_features * hidden)
    return np.concatenate([linear, w1, np.zeros(hidden), np.zeros(hidden)])


@jit
def _normalize(x, norm, xn):
    for j in range(x.shape[0]):
        sd = math.sqrt(norm[1, j]) if norm[2, 0] >= 2.0 else 1.0
        v = (x[j] - norm[0, j]) / max(sd, 1e-3)
        xn[j] = min(max(v, -_INPUT_CLIP), _INPUT_CLIP)


@jit
def head_forward(theta, norm, hidden, x, xn, z):
    """Fraud logit of feature row ``x``; leaves the normalized input in ``xn`` and the
    hidden activations in ``z`` for :func:`head_learn`."""
    F = x.shape[0]
    _normalize(x, norm, xn)
    s = theta[F]
    for j in range(F):
        s += theta[j] * xn[j]
    if hidden == 0:
        return s
    w1 = F + 1
    b1 = w1 + F * hidden
    w2 = b1 + hidden
    for h in range(hidden):
        z[h] = theta[b1 + h]
    for j in range(F):
        v = xn[j]
        base = w1 + j * hidden
        for h in range(hidden):
            z[h] += theta[base + h] * v
    for h in range(hidden):
        z[h] = math.tanh(z[h])
        s += theta[w2 + h] * z[h]
    return s


@jit
def _sigmoid(s):
    if s >= 0:
        return 1.0 / (1.0 + math.exp(-s))
    e = math.exp(s)
    return e / (1.0 + e)


@jit
def head_learn(theta, adam, norm, hidden, x, label, lr, memory, weight_decay, batch, xn, z):
    """Learn the head from ``(x, label)`` under the log loss; returns the loss.

    The input statistics absorb ``x`` first (EW with ``memory`` once past it). The gradient
    is accumulated in ``adam[2]``; every ``batch`` examples their mean takes one Adam step
    (``adam`` rows: first moment, second moment, accumulated gradient, and in the last row
    the step count and the examples accumulated). Mini-batches keep the cost of a step,
    which touches every weight, off the per-event path.
    """
    F = x.shape[0]
    n1 = norm[2, 0] + 1.0
    alpha = max(1.0 / n1, 1.0 / memory)
    for j in range(F):
        d = x[j] - norm[0, j]
        norm[0, j] += alpha * d
        norm[1, j] = (1.0 - alpha) * (norm[1, j] + alpha * d * d)
    norm[2, 0] = n1
    s = head_forward(theta, norm, hidden, x, xn, z)
    p = _sigmoid(s)
    ds = p - label
    g = adam[2]
    for j in range(F):
        g[j] += ds * xn[j]
    g[F] += ds
    if hidden > 0:
        w1 = F + 1
        b1 = w1 + F * hidden
        w2 = b1 + hidden
        for h in range(hidden):
            g[w2 + h] += ds * z[h]
            # z now holds the gradient at the hidden pre-activations.
            z[h] = ds * theta[w2 + h] * (1.0 - z[h] * z[h])
            g[b1 + h] += z[h]
        for j in range(F):
            v = xn[j]
            base = w1 + j * hidden
            for h in range(hidden):
                g[base + h] += z[h] * v
    adam[3, 1] += 1.0
    if adam[3, 1] >= batch:
        _adam_step(theta, adam, lr, weight_decay)
    if label > 0.5:
        return -math.log(max(p, 1e-300))
    return -math.log(max(1.0 - p, 1e-300))


@jit
def _adam_step(theta, adam, lr, weight_decay):
    t = adam[3, 0] + 1.0
    adam[3, 0] = t
    inv = 1.0 / adam[3, 1]
    adam[3, 1] = 0.0
    bc1 = 1.0 - 0.9**t
    bc2 = 1.0 - 0.999**t
    for j in range(theta.shape[0]):
        gj = adam[2, j] * inv + weight_decay * theta[j]
        adam[2, j] = 0.0
        adam[0, j] = 0.9 * adam[0, j] + 0.1 * gj
        adam[1, j] = 0.999 * adam[1, j] + 0.001 * gj * gj
        theta[j] -= lr * (adam[0, j] / bc1) / (math.sqrt(adam[1, j] / bc2) + 1e-8)


# ---------------------------------------------------------------- the whole event


@jit
def _event_row(ts, la, slots_i, aggs, rnn_i, taus, W, use_agg, use_rnn, n_ent, n_rnn, x):
    """Fill the head's feature row of one event: clock, amount, then per key field its
    entity features and (when ``use_rnn``) its recurrent features."""
    clock_features(ts, x[:N_CLOCK])
    x[N_CLOCK] = la
    for j in range(1, N_AMOUNT):
        x[N_CLOCK + j] = max(la - (j + 1.0), 0.0)
    k = N_CLOCK + N_AMOUNT
    for f in range(slots_i.shape[0]):
        s = slots_i[f]
        entity_features(aggs[f][s], ts, la, taus, W, use_agg, x[k:k + n_ent])
        k += n_ent
        if use_rnn:
            for j in range(n_rnn):
                x[k + j] = rnn_i[f, j]
            k += n_rnn


@jit
def _unsupervised(x, z_cols, prior_logit):
    # Before the head has learned enough frauds, rank by the largest positive surprise
    # among the key fields' forecasts: the prior up to three standard deviations, then
    # odds growing e-fold per further deviation.
    best = 0.0
    for c in z_cols:
        if x[c] > best:
            best = x[c]
    return _sigmoid(prior_logit + max(best - 3.0, 0.0))


@jit
def score_row(theta, norm, hidden, x, xn, z, n_frauds_seen, cold_start, z_cols, prior_logit):
    """Fraud probability of a feature row: the head's, blended with the unsupervised
    surprise while fewer than ``cold_start`` frauds have been learned (the surprise's
    weight falls linearly from 1 to 0; a lingering weight would rank surprising but
    legitimate events of the early stream above the head's later, confident frauds)."""
    p = _sigmoid(head_forward(theta, norm, hidden, x, xn, z))
    if n_frauds_seen >= cold_start or z_cols.shape[0] == 0:
        return p
    w = n_frauds_seen / cold_start
    return w * p + (1.0 - w) * _unsupervised(x, z_cols, prior_logit)


@jit
def score_learn_batch(ts, la, slots, resets, aggs, rnn, taus, use_agg, use_rnn, n_ent, n_rnn,
                      rev_pos, rev_row, rev_label,
                      buf_x, buf_ts, buf_slots, buf_gen, rows,
                      theta, adam, norm, hidden, lr, memory, weight_decay, batch,
                      counters, cold_start, z_cols, prior_logit, scores):
    """Score then learn a batch of events in arrival order, applying revealed labels where
    they fall: reveals ``j`` with ``rev_pos[j] == i`` are applied before event ``i``
    (``rev_pos[j] == n``: after the last event).

    A reveal trains the head on the feature row stored when its event was scored
    (``buf_x[rev_row[j]]``) and tallies the label into each key field's entity row, if that
    entity still owns the slot (its generation is unchanged). Event ``i`` then gets its
    feature row from the state before it, its score, and is committed: aggregates move, and
    its row is buffered at ``rows[i]`` (``-1``: not kept) until its label is revealed.

    ``counters``: [head updates, frauds learned, reveals skipped for an evicted entity].
    """
    n = ts.shape[0]
    n_fields = slots.shape[1]
    W = taus.shape[0]
    F = buf_x.shape[1]
    x = np.empty(F)
    xn = np.empty(F)
    z = np.empty(max(hidden, 1))
    c_gen = 7 + 4 * W
    j = 0
    n_rev = rev_pos.shape[0]
    for i in range(n + 1):
        while j < n_rev and rev_pos[j] <= i:
            r = rev_row[j]
            lab = rev_label[j]
            for q in range(F):
                x[q] = buf_x[r, q]
            head_learn(theta, adam, norm, hidden, x, lab, lr, memory, weight_decay, batch, xn,
                       z)
            counters[0] += 1
            if lab > 0.5:
                counters[1] += 1
            for f in range(n_fields):
                s = buf_slots[r, f]
                row = aggs[f][s]
                if row[c_gen] == buf_gen[r, f]:
                    apply_reveal(row, buf_ts[r], lab, taus, W)
                else:
                    counters[2] += 1
            j += 1
        if i == n:
            break
        for f in range(n_fields):
            if resets[i, f]:
                row = aggs[f][slots[i, f]]
                gen = row[c_gen]
                row[:] = 0.0
                row[c_gen] = gen + 1.0
        _event_row(ts[i], la[i], slots[i], aggs, rnn[i], taus, W, use_agg, use_rnn, n_ent,
                   n_rnn, x)
        scores[i] = score_row(theta, norm, hidden, x, xn, z, float(counters[1]), cold_start,
                              z_cols, prior_logit)
        for f in range(n_fields):
            commit_event(aggs[f][slots[i, f]], ts[i], la[i], taus, W)
        r = rows[i]
        if r >= 0:
            for q in range(F):
                buf_x[r, q] = x[q]
            buf_ts[r] = ts[i]
            for f in range(n_fields):
                buf_slots[r, f] = slots[i, f]
                buf_gen[r, f] = aggs[f][slots[i, f], c_gen]


@jit
def score_single(ts, la, slots_i, aggs, rnn_i, taus, use_agg, use_rnn, n_ent, n_rnn,
                 theta, norm, hidden, n_frauds_seen, cold_start, z_cols, prior_logit, x):
    """Score one event from the entity rows ``aggs[f][slots_i[f]]`` without changing them
    (the feature row is left in ``x``): the scoring half of :func:`score_learn_batch`."""
    F = x.shape[0]
    xn = np.empty(F)
    z = np.empty(max(hidden, 1))
    _event_row(ts, la, slots_i, aggs, rnn_i, taus, taus.shape[0], use_agg, use_rnn, n_ent,
               n_rnn, x)
    return score_row(theta, norm, hidden, x, xn, z, n_frauds_seen, cold_start, z_cols,
                     prior_logit)
