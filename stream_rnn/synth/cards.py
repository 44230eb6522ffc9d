"""A deterministic card-transaction stream with labelled fraud of three kinds.

Cards live somewhere and shop mostly at a few terminals near home, at their own hours and
rates, with amounts log-normal around their own typical spend scaled by what the terminal
sells (groceries, fuel, restaurants, electronics, online shops). People spend more at
weekends, sleep at night, and now and then travel or buy something big: genuine
behaviour has its own surprises, so fraud is not the only unusual thing.

Fraud, labelled transaction by transaction:

- ``card_testing``: a stolen card number is tried with a burst of small amounts (a few
  minutes, on one or two online shops that fraudsters use for testing), sometimes
  followed within hours by a large purchase;
- ``account_takeover``: someone else starts using a card alongside its owner for a few
  days: larger amounts, terminals the card never used, any hour of the day or night;
- ``compromised_terminal``: a skimmer sits on a terminal for some days; a share of the
  cards used there are cloned and spent days later at a ring of cash-out terminals, with
  amounts that look like the card's own.

The same arguments always give the same events, value for value.
"""

from __future__ import annotations

import math

import numpy as np

from stream_rnn.io.scenario import Incident

__all__ = ["FRAUD_KINDS", "Incident", "card_events"]

FRAUD_KINDS = ("card_testing", "account_takeover", "compromised_terminal")

#: 2024-03-01T00:00:00Z, a Friday.
EPOCH_START = 1_709_251_200

_DAY = 86_400
# Terminal categories: share of terminals, amount factor, spread factor, opening hours.
_CATEGORIES = (
    ("grocery", 0.35, 0.6, 0.8, (7.0, 21.0)),
    ("fuel", 0.12, 1.1, 0.5, (5.0, 23.0)),
    ("restaurant", 0.25, 0.9, 0.7, (11.0, 23.5)),
    ("electronics", 0.08, 4.0, 1.0, (9.0, 20.0)),
    ("online", 0.20, 1.3, 1.1, (0.0, 24.0)),
)


def _daily_hours(rng: np.random.Generator, n: int, peak_shift: float) -> np.ndarray:
    """Hours of day of ``n`` genuine transactions: lunch and evening peaks, quiet nights."""
    lunch = rng.normal(12.5 + peak_shift, 1.2, n)
    evening = rng.normal(18.5 + peak_shift, 1.8, n)
    morning = rng.normal(8.5 + peak_shift, 1.0, n)
    pick = rng.random(n)
    hours = np.where(pick < 0.35, lunch, np.where(pick < 0.85, evening, morning))
    night = rng.random(n) < 0.02
    hours = np.where(night, rng.uniform(0.0, 6.0, n), hours)
    return np.clip(hours, 0.0, 23.99)


def card_events(
    n_cards: int = 1500, n_terminals: int = 300, days: int = 30, seed: int = 0,
    card_testing: int = 12, account_takeover: int = 12, compromised_terminals: int = 3,
) -> tuple[list[dict], list[Incident]]:
    """Card transactions, time-ordered, in the daemon's input format.

    Each event is ``{"ts", "key", "terminal", "id", "features": {"amount"}, "label"}``:
    ``key`` is the card, ``terminal`` where it was used, ``id`` the transaction number
    (in time order), ``ts`` epoch seconds and ``label`` 1 for a fraudulent transaction.
    Fraud starts after the first week, so models have seen a week of genuine spending.

    Incidents are one per fraud case (for a compromised terminal, every card cloned from
    it is one case): ``keys`` names each card and terminal pair the fraud used as the
    models name entities with two key fields (``"C00042|T0017"``), and ``start`` and
    ``end`` span the case's fraudulent transactions.

    Returns the events and the incidents.

    Examples
    --------
    >>> events, incidents = card_events(n_cards=200, n_terminals=40, days=10, seed=1,
    ...                                 card_testing=2, account_takeover=2,
    ...                                 compromised_terminals=1)
    >>> sorted(events[0])
    ['features', 'id', 'key', 'label', 'terminal', 'ts']
    >>> sorted({i.kind for i in incidents})
    ['account_takeover', 'card_testing', 'compromised_terminal']
    >>> all(e["label"] == 0 or any(i.covers(f"{e['key']}|{e['terminal']}", e["ts"])
    ...                                for i in incidents) for e in events)
    True
    """
    if n_cards < 1 or n_terminals < 5 or days < 8:
        raise ValueError("need at least 1 card, 5 terminals and 8 days")
    rng = np.random.default_rng(seed)

    # Terminals: a place on a 100 x 100 map and a category.
    shares = np.array([c[1] for c in _CATEGORIES])
    category = rng.choice(len(_CATEGORIES), size=n_terminals, p=shares / shares.sum())
    place = rng.uniform(0, 100, (n_terminals, 2))
    factor = np.array([_CATEGORIES[c][2] for c in category]) * rng.lognormal(0, 0.2,
                                                                             n_terminals)
    spread = np.array([_CATEGORIES[c][3] for c in category])
    online = np.flatnonzero(category == len(_CATEGORIES) - 1)
    if len(online) < 3:
        online = np.arange(min(3, n_terminals))

    # Cards: home, favourite terminals nearby (plus a few online shops), habits.
    home = rng.uniform(0, 100, (n_cards, 2))
    rate = rng.lognormal(math.log(1.8), 0.6, n_cards)  # transactions a day
    mu = rng.normal(math.log(35.0), 0.5, n_cards)
    sigma = rng.uniform(0.35, 0.9, n_cards)
    peak_shift = rng.normal(0.0, 1.0, n_cards)
    favourites: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for c in range(n_cards):
        dist = np.hypot(*(place - home[c]).T)
        near = np.argsort(dist)[: int(rng.integers(5, 16))]
        shops = rng.choice(online, size=min(len(online), int(rng.integers(1, 4))),
                           replace=False)
        fav = np.unique(np.concatenate([near, shops]))
        w = rng.dirichlet(np.full(len(fav), 0.8))
        favourites.append(fav)
        weights.append(w)

    width = max(len(f) for f in favourites)
    fav_table = np.zeros((n_cards, width), dtype=np.int64)
    cum_table = np.ones((n_cards, width))
    for c in range(n_cards):
        fav_table[c, : len(favourites[c])] = favourites[c]
        cum_table[c, : len(weights[c])] = np.cumsum(weights[c])

    # Genuine spending, all days at once: weekends are busier.
    weekday0 = 4  # EPOCH_START is a Friday
    weekend = ((weekday0 + np.arange(days)) % 7 >= 5)
    counts = rng.poisson(rate[None, :] * np.where(weekend, 1.25, 1.0)[:, None])
    day_of, card_of = np.nonzero(counts)
    reps = counts[day_of, card_of]
    day_of, card_of = np.repeat(day_of, reps), np.repeat(card_of, reps)
    n = len(card_of)
    hours = _daily_hours(rng, n, peak_shift[card_of])
    pick = (rng.random(n)[:, None] > cum_table[card_of]).sum(axis=1)
    pick = np.minimum(pick, width - 1)
    term_of = fav_table[card_of, pick]
    # Travelling or a one-off shop: any terminal.
    roam = rng.random(n) < 0.04
    term_of = np.where(roam, rng.integers(n_terminals, size=n), term_of)
    amounts = np.exp(rng.normal(mu[card_of], sigma[card_of] * spread[term_of])) * factor[term_of]
    # A big purchase now and then.
    amounts = np.where(rng.random(n) < 0.01, amounts * rng.uniform(5, 20, n), amounts)
    stamps = (EPOCH_START + day_of * _DAY + (hours * 3600).astype(np.int64)
              + rng.integers(60, size=n))
    rows: list[tuple[int, int, int, float, int, int]] = list(zip(
        stamps.tolist(), card_of.tolist(), term_of.tolist(), amounts.tolist(), [0] * n,
        [-1] * n, strict=True))

    incidents: list[Incident] = []
    cases: list[str] = []  # the kind of each fraud case
    first_fraud = EPOCH_START + 7 * _DAY
    span = (days - 7) * _DAY - 3600
    victims = rng.permutation(n_cards)
    victim = iter(victims.tolist())
    testing_shops = rng.choice(online, size=min(len(online), 4), replace=False)
    case_rows: list[list[tuple[int, int, int, float, int, int]]] = []

    for _ in range(card_testing):
        c = next(victim)
        t0 = first_fraud + int(rng.integers(span))
        shops = rng.choice(testing_shops, size=int(rng.integers(1, 3)), replace=False)
        burst = []
        ts = t0
        for _ in range(int(rng.integers(6, 25))):
            ts += int(rng.integers(5, 60))
            burst.append((ts, c, int(rng.choice(shops)),
                          float(rng.choice([0.5, 1.0, 1.0, 2.0])) + rng.uniform(0, 1.5), 1))
        if rng.random() < 0.6:
            ts += int(rng.integers(600, 6 * 3600))
            burst.append((ts, c, int(rng.choice(online)), rng.uniform(150, 900), 1))
        case_rows.append(burst)
        cases.append("card_testing")

    for _ in range(account_takeover):
        c = next(victim)
        t0 = first_fraud + int(rng.integers(span - _DAY))
        length = rng.uniform(1.0, 4.0) * _DAY
        strangers = np.setdiff1d(np.arange(n_terminals), favourites[c])
        used = rng.choice(strangers, size=min(len(strangers), int(rng.integers(2, 8))),
                          replace=False)
        n = max(2, int(rng.poisson(rng.uniform(3, 8) * length / _DAY)))
        times = np.sort(t0 + rng.uniform(0, length, n)).astype(int)
        takeover = []
        for ts in times.tolist():
            t = int(rng.choice(used))
            amount = math.exp(rng.normal(mu[c] + math.log(rng.uniform(2.5, 6.0)),
                                         sigma[c])) * factor[t]
            takeover.append((ts, c, t, amount, 1))
        case_rows.append(takeover)
        cases.append("account_takeover")

    genuine_rows = sorted(rows)
    cash_out = rng.choice(n_terminals, size=min(n_terminals, 8), replace=False)
    skimmed_terminals = rng.choice(
        np.setdiff1d(np.arange(n_terminals), np.concatenate([online, cash_out])),
        size=compromised_terminals, replace=False)
    for term in skimmed_terminals.tolist():
        s0 = first_fraud - 3 * _DAY + int(rng.integers(max(1, span - 10 * _DAY)))
        s1 = s0 + int(rng.uniform(2, 6) * _DAY)
        skimmed = sorted({c for ts, c, t, _, _, _ in genuine_rows
                          if t == term and s0 <= ts < s1 and rng.random() < 0.5})
        clones = []
        for c in skimmed:
            start = s1 + int(rng.uniform(1, 8) * _DAY)
            for _ in range(int(rng.integers(1, 5))):
                ts = start + int(rng.uniform(0, 2 * _DAY))
                t = int(rng.choice(cash_out))
                amount = math.exp(rng.normal(mu[c] + 0.3, sigma[c])) * factor[t]
                clones.append((ts, c, t, amount, 1))
        clones = [r for r in clones if r[0] < EPOCH_START + days * _DAY]
        if clones:
            case_rows.append(clones)
            cases.append("compromised_terminal")

    for n, (kind, case) in enumerate(zip(cases, case_rows, strict=True)):
        case = [r for r in case if r[0] < EPOCH_START + days * _DAY]
        if not case:
            continue
        rows.extend((ts, c, t, amount, label, n) for ts, c, t, amount, label in case)
        start = min(r[0] for r in case)
        end = max(r[0] for r in case)
        keys = tuple(sorted({f"C{r[1]:05d}|T{r[2]:04d}" for r in case}))
        incidents.append(Incident(kind, keys, start, end))

    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    events = []
    for tx, (ts, c, t, amount, label, _) in enumerate(rows):
        events.append({
            "ts": ts,
            "key": f"C{c:05d}",
            "terminal": f"T{t:04d}",
            "id": tx,
            "features": {"amount": round(max(0.01, amount), 2)},
            "label": label,
        })
    incidents.sort(key=lambda inc: (inc.start, inc.kind, inc.keys))
    return events, incidents
