"""Foreign exceptions quoted inside our errors stay one line, whatever their message."""

from __future__ import annotations

import pytest

from protocol.errors import first_line, one_line


@pytest.mark.parametrize(
    ("exc", "first"),
    [
        (RuntimeError("Error(s) in loading state_dict:\n\tMissing key(s): fc.weight"),
         "Error(s) in loading state_dict:"),
        (RuntimeError("\n  leading blank lines\nmore"), "leading blank lines"),
        (RuntimeError(""), ""),
        (KeyError(), ""),
    ],
)  # fmt: skip
def test_first_line_is_the_message_first_line_or_nothing(exc: BaseException, first: str) -> None:
    assert first_line(exc) == first
    assert one_line(exc) == f"{type(exc).__name__}: {first}"
    assert "\n" not in one_line(exc)
