"""Find and mask card data in free text: PANs (typed or spoken), CVCs, expiry dates, US SSNs.

One detector serves `POST /v1/redact`, Guard's log filter and the audit writer's scrubber.
Numbers are read as *items*: digit runs and spoken number words ("four", "oh", "forty-two",
"double four", "triple seven"). Items joined by separators a person or a transcriber puts
between digit groups form a chain; any window of whole items in a chain whose 12-19 digits
pass Luhn and look like a card is a PAN. Missing a card is a defect; masking a Luhn-valid,
card-shaped number that was not a card is the accepted price.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

from guard.pci.cards import MAX_PAN, MIN_PAN, is_card_like

_UNITS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
          "six": "6", "seven": "7", "eight": "8", "nine": "9"}
_TEENS = {"ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
          "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19"}
_TENS = {"twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5", "sixty": "6",
         "seventy": "7", "eighty": "8", "ninety": "9"}
_WORDS = {**_UNITS, **_TEENS}


def _trie(words: list[str]) -> str:
    """A factored alternation (one branch per first letter): far fewer regex backtracks."""
    by_first: dict[str, list[str]] = {}
    for w in words:
        by_first.setdefault(w[0], []).append(w[1:])
    branches = []
    for first, rests in sorted(by_first.items()):
        alts = sorted((r for r in rests if r), key=len, reverse=True)
        body = "|".join(alts)
        if "" in rests:
            branches.append(f"{first}(?:{body})?" if alts else first)
        else:
            branches.append(f"{first}(?:{body})")
    return "(?:" + "|".join(branches) + ")"


_UNIT_ALT = _trie(list(_UNITS))
_TENS_ALT = _trie(list(_TENS))
_WORD_ALT = _trie(list(_WORDS))
_ANY_WORD_ALT = _trie([*_WORDS, *_TENS, "double", "triple"])

# One pass finds every item. ASCII digits only: \d would also match other scripts' digits.
_ITEM = re.compile(
    rf"(?P<num>[0-9]+)"
    rf"|\b(?P<rep>double|triple)[\s-]+(?P<repd>{_UNIT_ALT}|[0-9])\b"
    rf"|\b(?P<tens>{_TENS_ALT})(?:[\s-]+(?P<tu>{_UNIT_ALT})\b)?\b"
    rf"|\b(?P<word>{_WORD_ALT})\b")
# Loose item for the candidate scan: "double"/"triple" and tens stand alone here, the exact
# parse (_ITEM) joins them with what follows.
_ITEM_ANY = rf"(?>[0-9]++(?!/)|{_ANY_WORD_ALT}\b)"
_GAP_ANY = r"(?:[ \t\r\n,.\-]|\b(?:uh|um|er|ah|hmm)\b){1,12}"
# Between two digit runs: spaces, one dash or dot, or one line break (a group split by a wrap).
_DIGIT_GAP = re.compile(r"[ \t]{1,4}|[ \t]*[-.][ \t]*|[ \t]*\r?\n[ \t]*")
# Next to a spoken number: spaces, light punctuation, hesitations.
_WORD_GAP = re.compile(r"(?:[ \t\r\n,.\-]|\b(?:uh|um|er|ah|hmm)\b)+")
_MAX_GAP = 24
# Candidates: chains of 2+ items, digit runs of 3+, slash dates. They start right after a
# non-alphanumeric character (the text is scanned with a space prepended): a pattern that
# opens with one character set lets the engine skip ahead fast.
_BODY = (rf"(?P<slash>[0-9]{{1,2}}/(?:[0-9]{{4}}|[0-9]{{2}})(?![0-9/]))"
         rf"|{_ITEM_ANY}(?:{_GAP_ANY}{_ITEM_ANY})+"
         # A lone run only in the lengths a finding can have (CVC, expiry, SSN, PAN).
         rf"|(?:[0-9]{{3,4}}|[0-9]{{6}}|[0-9]{{9}}|[0-9]{{12,19}})(?![0-9])")
_CANDIDATE = re.compile(rf"[^a-z0-9](?=[0-9eftsnzod])(?P<body>{_BODY})")
# Digits glued to a letter ("visa4242...") in a second pass that opens with a digit.
_GLUED = re.compile(r"[0-9](?<=[a-z][0-9])(?=[0-9]{2})")
_BODY_AT = re.compile(rf"(?P<body>{_BODY})")

_KEYWORDS = re.compile(
    r"\b(?:(?P<cvc>cvv2?|cvc2?|cid|csc|security\s+code|verification\s+code|card\s+code"
    r"|code\s+on\s+the\s+back)"
    r"|(?P<exp>exp(?:iry|iration|ires|ire|ired|\.)?(?:\s+date)?|valid\s+(?:thru|through|until)"
    r"|good\s+(?:thru|through))"
    r"|(?P<ssn>ssn|social\s+security(?:\s+number)?|social))\b")
# Every keyword above contains one of these (a fast pre-check before the regex).
_KEYWORD_HINTS = ("cv", "cid", "csc", "code", "exp", "valid", "good", "ssn", "social")
_EXPIRY = re.compile(r"(?<![0-9])(?:0?[1-9]|1[0-2])[ \t]*[/\-.][ \t]*(?:20[0-9]{2}|[0-9]{2})(?![0-9])")
_MONTH_EXPIRY = re.compile(
    r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?,?[ \t]+(?:of[ \t]+)?"
    r"(?:20[0-9]{2}|'?[0-9]{2})(?![0-9])")
_SSN = re.compile(r"(?<![0-9])(?!000|666|9)[0-9]{3}([- ])(?!00)[0-9]{2}\1(?!0000)[0-9]{4}(?![0-9])")
_NEAR_CARD = 60  # characters after a card in which a CVC or expiry "stands next to" it
_NEAR_KEYWORD = 40

# A lone digit run matters only as a CVC (3-4), an expiry (4, 6), an SSN (9) or a PAN.
_LONE_RUN_LENGTHS = frozenset({3, 4, 6, 9, *range(MIN_PAN, MAX_PAN + 1)})

_SEPARATORS = str.maketrans("", "", " \t\r\n,.-")

# Kinds in order of precedence when findings overlap.
_RANK = {"pan": 0, "ssn": 1, "expiry": 2, "cvc": 3}


@dataclass(frozen=True)
class Finding:
    """One masked span of the original text."""

    kind: str  # pan | cvc | expiry | ssn
    start: int
    end: int
    last4: str | None = None


@dataclass(frozen=True)
class Redaction:
    """The masked text and what was found where (offsets into the original text)."""

    text: str
    findings: list[Finding]


@dataclass(frozen=True)
class _Item:
    start: int
    end: int
    digits: str
    word: bool


def _items(low: str, start: int, end: int) -> list[_Item]:
    out: list[_Item] = []
    for m in _ITEM.finditer(low, start, end):
        if m.group("num") is not None:
            out.append(_Item(m.start(), m.end(), m.group("num"), False))
            continue
        if m.group("rep") is not None:
            d = m.group("repd")
            d = _UNITS.get(d, d)
            out.append(_Item(m.start(), m.end(), d * (2 if m.group("rep") == "double" else 3), True))
        elif m.group("tens") is not None:
            unit = m.group("tu")
            out.append(_Item(m.start(), m.end(),
                             _TENS[m.group("tens")] + (_UNITS[unit] if unit else "0"), True))
        elif m.group("word") is not None:
            out.append(_Item(m.start(), m.end(), _WORDS[m.group("word")], True))
    return out


def _chains(text: str, items: list[_Item]) -> list[list[_Item]]:
    chains: list[list[_Item]] = []
    current: list[_Item] = []
    for item in items:
        if current:
            prev = current[-1]
            gap = text[prev.end:item.start]
            if len(gap) <= _MAX_GAP and gap and (
                    _DIGIT_GAP.fullmatch(gap) if not (prev.word or item.word)
                     else _WORD_GAP.fullmatch(gap)):
                current.append(item)
                continue
            chains.append(current)
        current = [item]
    if current:
        chains.append(current)
    return chains


def _cards_in(chain: list[_Item]) -> list[tuple[int, int, str]]:
    """(first item, last item, digits) of each PAN in a chain, leftmost-longest."""
    found: list[tuple[int, int, str]] = []
    n = len(chain)
    s = 0
    while s < n:
        best: tuple[int, str] | None = None
        digits = ""
        for e in range(s, n):
            digits += chain[e].digits
            if len(digits) > MAX_PAN:
                break
            if len(digits) >= MIN_PAN and is_card_like(digits):
                best = (e, digits)
        if best is not None:
            found.append((s, best[0], best[1]))
            s = best[0] + 1
        else:
            s += 1
    return found


def _digits(chain: list[_Item]) -> str:
    return "".join(it.digits for it in chain)


def _is_expiry(text: str, chain: list[_Item]) -> bool:
    """MM/YY, MM-YYYY, "oh eight twenty seven", 0827: a month then a year."""
    if _EXPIRY.fullmatch(text, chain[0].start, chain[-1].end):
        return True
    digits = _digits(chain)
    return len(chain) > 1 and len(digits) in (4, 6) and 1 <= int(digits[:2]) <= 12


def find(text: str) -> list[Finding]:
    """Every PAN, CVC, expiry and SSN in `text`, as non-overlapping spans in text order."""
    low = text.lower()
    if len(low) != len(text):  # a few non-ASCII letters change length when lowered
        low = "".join(ch.lower() if len(ch.lower()) == 1 else ch for ch in text)
    chains: list[list[_Item]] = []
    slashes: list[tuple[int, int]] = []
    # One C-speed pass finds the only places that can matter: runs of several number items,
    # digit runs of 3+ and slash dates; isolated words ("one moment") are skipped there.
    padded = " " + low
    last_long = -_NEAR_CARD - 1  # end of the last candidate long enough to hold a card
    found = list(_CANDIDATE.finditer(padded))
    glued = [g for g in map(_BODY_AT.match, itertools.repeat(padded),
                            (m.start() for m in _GLUED.finditer(padded))) if g]
    if glued:
        found = sorted(found + glued, key=lambda m: m.start("body"))
    for m in found:
        lo, hi = m.start("body") - 1, m.end("body") - 1
        if m.group("slash") is not None:
            slashes.append((lo, hi))
            continue
        body = m.group("body")
        bare = body.translate(_SEPARATORS)
        if bare.isdigit():
            n = len(bare)
            if n >= MIN_PAN:
                last_long = hi
            elif n not in _LONE_RUN_LENGTHS or (
                    # A short number (an amount, a phone, a lone 123) matters only as a CVC,
                    # expiry or SSN: after a keyword, near a card, or shaped like an SSN.
                    lo - last_long > _NEAR_CARD and not (n == 9 and body != bare)
                    and _keyword_before(low, lo) is None):
                continue
            if body == bare:  # one bare digit run
                chains.append([_Item(lo, hi, body, False)])
                continue
        new = _chains(low, _items(low, lo, hi))
        if any(len(_digits(c)) >= MIN_PAN for c in new):
            last_long = hi
        chains.extend(new)
    findings: list[Finding] = []
    starts = [c[0].start for c in chains]
    for i, chain in enumerate(chains):
        digits = _digits(chain)
        n = len(digits)
        if n >= MIN_PAN:
            cards = _cards_in(chain)
            for k, (s, e, pan) in enumerate(cards):
                end = chain[e].end
                findings.append(Finding("pan", chain[s].start, end, pan[-4:]))
                # Digits read on in the same breath ("... 4242 737") are its CVC or expiry.
                rest = chain[e + 1:cards[k + 1][0] if k + 1 < len(cards) else len(chain)]
                if rest:
                    findings.extend(_same_breath(low, rest))
                    continue
                findings.extend(_next_to_card(low, chains, starts, slashes, i, end))
        if n == 9 and len(chain) == 3 and _SSN.fullmatch(low, chain[0].start, chain[-1].end):
            findings.append(Finding("ssn", chain[0].start, chain[-1].end))
        if n in (3, 4, 6, 9):
            kw = _keyword_before(low, chain[0].start)
            if kw is None:
                continue
            kind, kw_end = kw
            if kind == "cvc" and n in (3, 4):
                findings.append(Finding("cvc", chain[0].start, chain[-1].end))
            elif kind == "exp" and n in (4, 6):
                month = _MONTH_EXPIRY.search(low, kw_end, chain[-1].end)
                if month and month.end() == chain[-1].end:
                    findings.append(Finding("expiry", month.start(), month.end()))
                elif _is_expiry(low, chain) or (n == 4 and 1 <= int(digits[:2]) <= 12):
                    findings.append(Finding("expiry", chain[0].start, chain[-1].end))
            elif kind == "ssn" and n == 9:
                findings.append(Finding("ssn", chain[0].start, chain[-1].end))
    for lo, hi in slashes:
        kw = _keyword_before(low, lo)
        if kw is not None and kw[0] == "exp" and _EXPIRY.fullmatch(low, lo, hi):
            findings.append(Finding("expiry", lo, hi))
    return _resolve(findings)


def _same_breath(low: str, rest: list[_Item]) -> list[Finding]:
    """Items right after a card in its chain: an expiry (MM YY) first, then a CVC."""
    out: list[Finding] = []
    j = 0
    head = _digits(rest[:2])
    if len(rest) >= 2 and len(head) in (4, 6) and 1 <= int(head[:2]) <= 12 and len(rest) > 2:
        out.append(Finding("expiry", rest[0].start, rest[1].end))
        j = 2
    tail = rest[j:]
    n = len(_digits(tail))
    if n in (3, 4):
        out.append(Finding("cvc", tail[0].start, tail[-1].end))
    elif n == 6 and _is_expiry(low, tail):
        out.append(Finding("expiry", tail[0].start, tail[-1].end))
    return out


def _keyword_before(low: str, pos: int) -> tuple[str, int] | None:
    """The kind of the last keyword ending shortly before `pos` (cvc, exp or ssn), if any."""
    lo = max(0, pos - _NEAR_KEYWORD)
    window = low[lo:pos]
    if not any(hint in window for hint in _KEYWORD_HINTS):
        return None  # cheap substring test first: most numbers have no keyword before them
    last = None
    for m in _KEYWORDS.finditer(low, lo, pos):
        last = m
    if last is None or last.lastgroup is None:
        return None
    return last.lastgroup, last.end()


def _next_to_card(low: str, chains: list[list[_Item]], starts: list[int],
                  slashes: list[tuple[int, int]], i: int, end: int) -> list[Finding]:
    """An expiry and then a CVC standing right after a card belong to it."""
    out: list[Finding] = []
    hi = end + _NEAR_CARD
    exp_end = None
    k = bisect.bisect_left(slashes, (end, 0))
    if k < len(slashes) and slashes[k][0] < hi and _EXPIRY.fullmatch(low, *slashes[k]):
        out.append(Finding("expiry", *slashes[k]))
        exp_end = slashes[k][1]
    j = bisect.bisect_left(starts, end)
    while j < len(chains) and starts[j] < hi:
        chain = chains[j]
        n = len(_digits(chain))
        if exp_end is None and _is_expiry(low, chain) and n != 3:
            out.append(Finding("expiry", chain[0].start, chain[-1].end))
            exp_end = chain[-1].end
        elif n in (3, 4):
            out.append(Finding("cvc", chain[0].start, chain[-1].end))
            break
        elif n >= MIN_PAN:
            break  # the next card: its own neighbours are its own
        j += 1
    return out


def _resolve(findings: list[Finding]) -> list[Finding]:
    """Drop findings overlapping a stronger one (a PAN beats an SSN beats an expiry beats a CVC)."""
    kept: list[Finding] = []
    for f in sorted(findings, key=lambda f: (f.start, _RANK[f.kind])):
        while kept and f.start < kept[-1].end:
            if _RANK[f.kind] >= _RANK[kept[-1].kind]:
                break
            kept.pop()  # the stronger finding replaces the weaker one it overlaps
        else:
            kept.append(f)
    return kept


def mask_for(f: Finding) -> str:
    """The replacement text: a PAN keeps at most its last four digits."""
    if f.kind == "pan":
        return f"[CARD ****{f.last4}]"
    return {"cvc": "[CVC]", "expiry": "[EXP]", "ssn": "[SSN]"}[f.kind]


def redact(text: str) -> Redaction:
    """Mask every finding in `text`."""
    findings = find(text)
    if not findings:
        return Redaction(text, [])
    parts: list[str] = []
    pos = 0
    for f in findings:
        parts.append(text[pos:f.start])
        parts.append(mask_for(f))
        pos = f.end
    parts.append(text[pos:])
    return Redaction("".join(parts), findings)


def mask_text(text: str) -> str:
    """The masked text only (the log filter's and the audit scrubber's entry point)."""
    return redact(text).text
