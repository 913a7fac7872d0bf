"""Progress bars: one per call, none for quick calls, none with ``verbose=0``.

A public call (an ensemble's ``predict_proba``, a ``fit``) runs others that have progress of
their own: the ensemble runs each member, a member decodes its images and computes backbone
features. Bars opened inside one another leave blank lines and cursor-up escapes (``\\x1b[A``)
in notebooks and logs, so the outermost call owns the output: while its bar is open (shown or
silenced by ``verbose=0``), the calls it makes show none. Which call is outermost is kept in a
:mod:`contextvars` variable, so threads and asyncio tasks of other calls keep their own; a
call that hands work to threads passes its state on with :func:`carried`.

A bar appears only once its call has run :data:`DELAY_SECONDS` (tqdm's ``delay``), so quick
calls print nothing, and it is cleared when the call ends unless asked to stay (``leave``).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

from tqdm.auto import tqdm

#: Seconds a call runs before its bar appears.
DELAY_SECONDS = 1.0

#: Whether a call of this context already owns the output (shows a bar, or silenced it).
_OWNED: contextvars.ContextVar[bool] = contextvars.ContextVar("wjsentiment_progress",
                                                              default=False)


@contextlib.contextmanager
def progress(total: int | None, desc: str, unit: str, verbose: int, *,
             leave: bool = False) -> Iterator[tqdm]:
    """A tqdm bar for one call: shown when ``verbose > 0`` and no outer call owns the output.

    Inside it, every other :func:`progress` gets a disabled bar (updating it costs nothing).

    Examples
    --------
    >>> with progress(2, "outer", "step", verbose=0) as outer:
    ...     with progress(2, "inner", "step", verbose=1) as inner:
    ...         inner.disable
    True
    """
    shown = verbose > 0 and not _OWNED.get()
    token = _OWNED.set(True)
    try:
        with tqdm(total=total, desc=desc, unit=unit, disable=not shown, leave=leave,
                  delay=DELAY_SECONDS) as bar:
            yield bar
    finally:
        _OWNED.reset(token)


def carried(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run in (a copy of) the caller's progress state, from whichever thread calls it:
    a new thread starts outside every call and would show bars of its own.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> with progress(1, "outer", "step", verbose=0), ThreadPoolExecutor(1) as pool:
    ...     pool.submit(carried(_OWNED.get)).result()
    True
    """
    context = contextvars.copy_context()
    return lambda *args, **kwargs: context.copy().run(fn, *args, **kwargs)
