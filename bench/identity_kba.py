"""Cost of one knowledge-answer check at the production scrypt cost, against an OTP check.

The ratio is the price of storing answers as a slow salted hash: what one guess costs an
attacker who steals the table, and what each KBA answer costs Guard per call.
Run: .venv/bin/python bench/identity_kba.py
"""

from __future__ import annotations

import secrets
import statistics
import time

from guard.auth.factors import ScryptHasher, code_hash, codes_equal


def _timed(fn: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def main() -> None:
    """Print the median KBA check time and its ratio to an OTP (HMAC) check."""
    hasher = ScryptHasher()  # production defaults: N=2**15, r=8, p=3
    stored = hasher.hash("Rex the Dog")
    key, vid = secrets.token_bytes(32), "ver_bench"
    expected = code_hash(key, vid, "123456")
    kba = _timed(lambda: hasher.verify("rex the dog", stored), 20)
    otp = _timed(lambda: codes_equal(code_hash(key, vid, "123456"), expected), 2000)
    print(f"kba_check_ms={kba * 1000:.1f} otp_check_us={otp * 1e6:.1f} ratio={kba / otp:.0f}x "
          f"(scrypt N=2**{hasher.log2_n} r={hasher.r} p={hasher.p})")


if __name__ == "__main__":
    main()
