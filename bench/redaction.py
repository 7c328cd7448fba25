"""Redaction throughput (MB/s) on a 1 MiB realistic transcript, and false positives on non-cards.

Baseline in the same run: one pass of a trivial regex (`[0-9]+`) over the same text, i.e.
the cost of merely scanning it.
Run: .venv/bin/python bench/redaction.py
"""

from __future__ import annotations

import random
import re
import time

from guard.pci.cards import luhn_ok
from guard.pci.redact import find, redact

TEST_CARDS = ["4242424242424242", "5555555555554444", "378282246310005", "6011111111111117",
              "3566002020360505", "3056930009020004", "6200000000000005", "4000056655665556"]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
FILLER = [
    "thank you for calling how can I help you today",
    "sure let me pull up your account one moment please",
    "I see the order from last Tuesday it shipped on the 14th",
    "your balance is $1,234.56 and the minimum payment is $35",
    "can you confirm your phone number it's 555-123-4567 right",
    "okay oh I see, that's the one from two weeks ago",
    "the order number is 88231 and the tracking is 1Z999AA10123456784",
    "we can do a payment plan of 3 payments of $120.00 starting 12/01/2026",
    "is there anything else I can help you with today",
    "I'll note that on the account, ticket 4471203",
]


def spoken(pan: str, rng: random.Random) -> str:
    """A PAN as a speech-to-text engine might write it."""
    out = []
    for ch in pan:
        word = WORDS[int(ch)]
        out.append("oh" if ch == "0" and rng.random() < 0.5 else word)
    return " ".join(out)


def transcript(size: int, seed: int = 7) -> tuple[str, int]:
    """About `size` characters of call transcript with cards typed and spoken now and then."""
    rng = random.Random(seed)
    parts: list[str] = []
    total = cards = 0
    while total < size:
        if rng.random() < 0.03:
            pan = rng.choice(TEST_CARDS)
            style = rng.randrange(4)
            if style == 0:
                line = f"Customer: the card is {' '.join(pan[i:i + 4] for i in range(0, len(pan), 4))}"
            elif style == 1:
                line = f"Customer: it's {spoken(pan, rng)} expires oh eight twenty seven cvv one two three"
            elif style == 2:
                line = f"Agent: I have {'-'.join(pan[i:i + 4] for i in range(0, len(pan), 4))} exp 08/27"
            else:
                line = f"Customer: {pan}"
            cards += 1
        else:
            line = f"{rng.choice(['Agent', 'Customer'])}: {rng.choice(FILLER)}"
        parts.append(line)
        total += len(line) + 1
    return "\n".join(parts)[:size], cards


def non_card_corpus(n: int, seed: int = 11) -> list[str]:
    """Numbers that are not cards: phones, dates, amounts, order numbers, Luhn-failing 16s."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        kind = rng.randrange(6)
        if kind == 0:
            out.append(f"call {rng.randrange(200, 999)}-{rng.randrange(200, 999)}-{rng.randrange(10**4):04d}")
        elif kind == 1:
            out.append(f"on {rng.randrange(1, 13)}/{rng.randrange(1, 29)}/20{rng.randrange(20, 30)}")
        elif kind == 2:
            out.append(f"amount ${rng.randrange(10**6):,}.{rng.randrange(100):02d}")
        elif kind == 3:
            out.append(f"order {rng.randrange(10**5, 10**10)}")
        elif kind == 4:
            # A 16-digit number that fails Luhn (a card typo must stay visible as-is).
            while True:
                d = "4" + "".join(str(rng.randrange(10)) for _ in range(15))
                if not luhn_ok(d):
                    break
            out.append(f"ref {d}")
        else:
            out.append(f"+1 ({rng.randrange(200, 999)}) {rng.randrange(200, 999)} "
                       f"{rng.randrange(10**4):04d} and +44 20 7946 {rng.randrange(10**4):04d}")
    return out


def main() -> None:
    text, cards = transcript(1024 * 1024)
    mb = len(text.encode()) / 1e6
    scan = re.compile(r"[0-9]+")
    # Best of 7 for both: the figure is the code's speed, not the machine's other load.
    base = elapsed = float("inf")
    for _ in range(7):
        t0 = time.perf_counter()
        sum(1 for _ in scan.finditer(text))
        t1 = time.perf_counter()
        r = redact(text)
        t2 = time.perf_counter()
        base, elapsed = min(base, t1 - t0), min(elapsed, t2 - t1)
    pans = sum(1 for f in r.findings if f.kind == "pan")
    left = [c for c in TEST_CARDS if c in r.text.replace(" ", "").replace("-", "")]
    corpus = non_card_corpus(20000)
    fps = sum(1 for line in corpus if any(f.kind == "pan" for f in find(line)))
    print(f"redaction: {mb / elapsed:.1f} MB/s on a {mb:.2f} MB transcript "
          f"({cards} cards planted, {pans} PANs found, {len(left)} left in clear)")
    print(f"baseline digit scan: {mb / base:.1f} MB/s; ratio redaction/baseline = {base / elapsed:.3f}")
    print(f"false positives: {fps} of {len(corpus)} non-card numbers masked as PANs")


if __name__ == "__main__":
    main()
