"""Behaviour token lists with prefix patterns (``interactions.behaviour_tokens``,
``recommend.reason_tokens``).

An entry ending in ``*`` is a pattern: ``"contract:*"`` stands for every token that starts
with ``contract:``. Any other entry is one token. ``*`` alone, or a ``*`` before the end, is
refused (:func:`entry_problem`): the first would make any item a behaviour token, so a
misspelt item or an offer id in a behaviour event would pass unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column
from pyspark.sql import functions as F

WILDCARD = "*"


def is_pattern(entry: str) -> bool:
    """Whether a list entry is a prefix pattern (ends in ``*``)."""
    return entry.endswith(WILDCARD)


def entry_problem(entry: str) -> str | None:
    """Why ``entry`` is not a valid token or pattern, or None when it is."""
    if entry == WILDCARD:
        return f"{entry!r} alone would match every item; name a prefix, such as 'contract:*'"
    if WILDCARD in entry[:-1]:
        return f"{entry!r}: '*' may only end an entry, as in 'contract:*' (a prefix pattern)"
    return None


def _split(entries: Iterable[str]) -> tuple[list[str], list[str]]:
    """(exact tokens, pattern prefixes) of a list."""
    exact, prefixes = [], []
    for entry in entries:
        if is_pattern(entry):
            prefixes.append(entry[: -len(WILDCARD)])
        else:
            exact.append(entry)
    return exact, prefixes


def matches(token: str, entries: Iterable[str]) -> bool:
    """Whether ``token`` is listed in ``entries`` or starts with a pattern's prefix."""
    exact, prefixes = _split(entries)
    return token in exact or any(token.startswith(p) for p in prefixes)


def matches_column(column: Column, entries: Iterable[str]) -> Column:
    """Spark's :func:`matches`: true where ``column`` is a listed token or starts with a
    pattern's prefix, false otherwise (also for null). ``entries`` is config-sized."""
    exact, prefixes = _split(entries)
    match = column.isin(*exact) if exact else F.lit(False)
    for prefix in prefixes:
        match = match | column.startswith(prefix)
    return F.coalesce(match, F.lit(False))


def overlaps(entry: str, entries: Iterable[str]) -> bool:
    """Whether some token could match both ``entry`` and ``entries`` (a pattern overlaps a
    listed token it matches, or a pattern whose prefix extends or shortens its own)."""
    if not is_pattern(entry):
        return matches(entry, entries)
    prefix = entry[: -len(WILDCARD)]
    exact, prefixes = _split(entries)
    return any(t.startswith(prefix) for t in exact) or any(
        p.startswith(prefix) or prefix.startswith(p) for p in prefixes
    )


def covering_patterns(tokens: Iterable[str], *, avoid: Iterable[str] = ()) -> list[str]:
    """Short entries that cover ``tokens``: ``prefix:*`` for tokens with a colon, the token
    itself otherwise, or where the pattern would also match one of ``avoid`` (offer ids).

    Parameters
    ----------
    tokens : iterable of str
        Tokens to cover, e.g. the unknown items of behaviour events.
    avoid : iterable of str
        Items no suggested pattern may match (a pattern matching an offer id is refused).

    Returns
    -------
    list of str
        Sorted entries for ``interactions.behaviour_tokens``.
    """
    avoid = list(avoid)
    entries = set()
    for token in tokens:
        head, colon, _ = token.partition(":")
        pattern = f"{head}:{WILDCARD}"
        usable = colon and head and not any(a.startswith(f"{head}:") for a in avoid)
        entries.add(pattern if usable else token)
    return sorted(entries)
