"""Progress bars for our commands: tqdm on a terminal, plain periodic lines anywhere else."""

import math
import sys

# Off a terminal (a log file, a pipe, a CI job) tqdm's in-place redraws are "\r"-joined into one
# huge line. There a bar prints a whole line at every tenth of its total (tqdm's miniters), or
# every 30 s when the total is unknown: a handful of lines per bar, readable in any log.
LINES_PER_BAR = 10
SECONDS_WITHOUT_TOTAL = 30.0


class _Lines:
    """A file for tqdm that turns each redraw ("\\r" + status + padding) into a line of its own,
    skipping a redraw whose count has not moved (tqdm redraws the last state when a bar closes)."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text and text.partition("[")[0] != self.last:
            self.stream.write(text + "\n")
            self.last = text.partition("[")[0]

    def flush(self) -> None:
        self.stream.flush()


def progress(iterable=None, **kwargs):
    """`tqdm(iterable, **kwargs)`, with periodic whole lines when stderr is not a terminal."""
    from tqdm import tqdm

    if not sys.stderr.isatty():
        total = kwargs.get("total", len(iterable) if hasattr(iterable, "__len__") else None)
        every = {"miniters": math.ceil(total / LINES_PER_BAR), "mininterval": 0} if total else {}
        # maxinterval off: tqdm's monitor thread would otherwise drop miniters to 1 after a slow tenth.
        kwargs = {"mininterval": SECONDS_WITHOUT_TOTAL, **kwargs, **every, "maxinterval": math.inf}
        kwargs["file"] = _Lines(sys.stderr)
        kwargs.setdefault("disable", False)  # cli.py turns other libraries' bars off here (TQDM_DISABLE)
    return tqdm(iterable, **kwargs)
