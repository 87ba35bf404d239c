"""The main job's terminal: each chapter's stage logs and progress bars, which its kernel writes to one log file
(see `notebook.start`), followed as they are written.

A progress bar (lines that tqdm rewrites with carriage returns) is redrawn in place on a terminal and printed
about once a minute otherwise (a log file, CI), so a redirected log stays readable.
"""
from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from pathlib import Path

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LOG_ENV = "DGPO_LOG"  # the main job names its log file here; each chapter's kernel writes its stderr to it


class LogFollower:
    """Print what is appended to `path` from now on, until `stop()`. `status`, if given, is asked on every poll for a
    line of its own to print (the main job's "stages finished, time left" when a stage finishes)."""

    def __init__(self, path: Path, out=None, prefix: str = "  ", every_s: float = 0.5, bar_every_s: float = 60.0,
                 status=None):
        self.path, self.out, self.prefix = Path(path), out or sys.stdout, prefix
        self.status = status
        self.every_s, self.bar_every_s = every_s, bar_every_s
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self._pos = self.path.stat().st_size if self.path.exists() else 0
        self._partial, self._bar_shown, self._bar_printed_at = "", False, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "LogFollower":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # what was written last
        if self._bar_shown:
            self.out.write("\n")
            self._bar_shown = False
        self.out.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def poll(self) -> None:
        self._poll_log()
        note = self.status() if self.status else None
        if note:
            self._line(note)
            self.out.flush()

    def _poll_log(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace", newline="") as f:  # keep the \r of bars
            f.seek(self._pos)
            text = f.read()
            self._pos = f.tell()
        if not text:
            return
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            seg = line.split("\r")[-1].rstrip()
            if seg:
                self._line(seg)
        bar = self._partial.split("\r")[-1].rstrip()
        if bar:
            self._bar(bar)
        self.out.flush()

    def _plain(self, text: str) -> str:
        """Colour codes (IPython tracebacks, some libraries' logs) only on a terminal; a log file gets plain text."""
        return text if self.tty else _ANSI.sub("", text)

    def _line(self, text: str) -> None:
        text = self._plain(text)
        if self._bar_shown:  # a finished line goes below the bar that was being redrawn
            self.out.write("\n")
            self._bar_shown = False
        self.out.write(f"{self.prefix}{text}\n")

    def _bar(self, text: str) -> None:
        if self.tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self.out.write("\r" + f"{self.prefix}{text}"[:width].ljust(width))
            self._bar_shown = True
        elif time.time() - self._bar_printed_at >= self.bar_every_s:
            self._bar_printed_at = time.time()
            self.out.write(f"{self.prefix}{self._plain(text)}\n")
