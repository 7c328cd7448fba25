"""Registry blocks and file parsing without a database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from guard.tcpa.registry import BITMAP_BYTES, Block, encode_block, parse_file, parse_line

locals_ = st.lists(st.integers(0, 9_999_999), max_size=200)


@settings(max_examples=50, derandomize=True, deadline=None)
@given(values=locals_, probes=locals_)
def test_blocks_answer_membership_exactly(values: list[int], probes: list[int]) -> None:
    fmt, data, count = encode_block(np.array(values, dtype=np.uint32))
    blk = Block.decode(fmt, data)
    got = blk.contains(np.array(probes, dtype=np.uint32)).tolist()
    assert got == [p in set(values) for p in probes]
    assert count == len(set(values))


def test_dense_area_codes_use_a_bitmap() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 10_000_000, size=400_000).astype(np.uint32)
    fmt, data, count = encode_block(values)
    assert fmt == "bitmap" and len(data) == BITMAP_BYTES
    assert len(data) / count < 4


def test_fast_and_line_by_line_parsing_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    nums = [f"{a}{b}{c:04d}" for a, b, c in zip(rng.integers(200, 999, 3000), rng.integers(200, 999, 3000),
                                                   rng.integers(0, 9999, 3000), strict=True)]
    fast = tmp_path / "fast.txt"
    fast.write_text("\n".join(nums) + "\n")
    slow = tmp_path / "slow.txt"  # a CRLF file never takes the vectorized path
    slow.write_text("\r\n".join(nums) + "\r\n")
    a, b = parse_file(fast, changes=False), parse_file(slow, changes=False)
    assert a.adds.keys() == b.adds.keys()
    for k in a.adds:
        assert a.adds[k].tolist() == b.adds[k].tolist()
    assert a.lines == b.lines == 3000


def test_parse_line_formats() -> None:
    assert parse_line("212,5551234", changes=False) == (212, 5551234, True)
    assert parse_line("+1 (212) 555-1234", changes=False) == (212, 5551234, True)
    assert parse_line("212,5551234,D", changes=True) == (212, 5551234, False)
    assert parse_line("112,5551234", changes=False) is None
    assert parse_line("212,1551234", changes=False) is None
    assert parse_line("212555123", changes=False) is None
