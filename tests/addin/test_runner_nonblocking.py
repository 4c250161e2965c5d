"""The nonblocking mark lets trivial handlers skip the thread pool."""

from __future__ import annotations

from pacsref.addin import is_nonblocking, nonblocking


def test_mark_survives_binding() -> None:
    """A method marked nonblocking is recognised on the bound method; unmarked ones are not."""

    class Handler:
        @nonblocking
        def fast(self) -> int:
            return 0

        def slow(self) -> int:
            return 0

    handler = Handler()
    assert is_nonblocking(handler.fast)
    assert not is_nonblocking(handler.slow)
