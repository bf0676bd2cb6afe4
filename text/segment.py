"""jieba's accurate-mode segmentation with its HMM, in one pass per block of text.

``jieba.Tokenizer.cut(text, HMM=True)`` builds a dict of every dictionary word starting at each position
(``get_DAG``), then finds the most probable route through it with a generator and ``max`` over tuples per
position (``calc``), then walks the route and hands runs of unknown single characters to its HMM
(``finalseg``). :class:`DagSegmenter` does the first two in one right-to-left loop over the same dictionary
(each candidate word scored as soon as it is found, the route kept in two lists) and the walk as jieba does
it, with jieba's own ``finalseg``, so its words are jieba's words (tests compare the two on real titles):
same scores, same order of evaluation, ties going to the longer word as ``max`` over ``(score, end)`` does.
"""

from __future__ import annotations

from math import log
from typing import Any

from jieba import finalseg, re_han_default, re_skip_default

_RUN_CACHE_SIZE = 100_000  # bounded: emptied when it holds this many runs


class DagSegmenter:
    """Segments text as ``tokenizer.cut(text, HMM=True)`` does, over ``tokenizer``'s dictionary as it is now
    (words added to the tokenizer later are not seen: build the segmenter after the user words)."""

    def __init__(self, tokenizer: Any):
        tokenizer.check_initialized()
        self._freq: dict[str, int] = tokenizer.FREQ
        self._logtotal = log(tokenizer.total)
        self._runs: dict[str, list[str]] = {}  # the HMM's words of each unknown run (brand names recur)

    def cut(self, text: str) -> list[str]:
        words: list[str] = []
        for block in re_han_default.split(text):
            if not block:
                continue
            if re_han_default.match(block):
                self._cut_block(block, words)
                continue
            for piece in re_skip_default.split(block):
                if re_skip_default.match(piece):
                    words.append(piece)
                else:
                    words.extend(piece)  # jieba gives each character of the rest on its own
        return words

    def _route(self, block: str) -> list[int]:
        """For each position, where the most probable word starting there ends (inclusive)."""
        freq, logtotal = self._freq, self._logtotal
        n = len(block)
        score = [0.0] * (n + 1)
        end = [0] * (n + 1)
        for start in range(n - 1, -1, -1):
            best: float | None = None
            best_end = start
            stop = start
            fragment = block[start]
            while stop < n:
                count = freq.get(fragment)
                if count is None:  # no dictionary word goes on with this prefix
                    break
                if count:  # a word (count 0 marks a prefix only)
                    candidate = log(count) - logtotal + score[stop + 1]
                    if best is None or candidate >= best:  # ties: the later end, as max((score, end)) picks
                        best, best_end = candidate, stop
                stop += 1
                fragment = block[start : stop + 1]
            if best is None:  # no word starts here: the character alone, count taken as 1
                best = log(freq.get(block[start]) or 1) - logtotal + score[start + 1]
            score[start], end[start] = best, best_end
        return end

    def _flush(self, run: str, words: list[str]) -> None:
        """A run of single characters between words: one character as it is, a known word as its characters,
        anything else through jieba's HMM."""
        if len(run) == 1:
            words.append(run)
        elif not self._freq.get(run):
            cut = self._runs.get(run)
            if cut is None:
                cut = list(finalseg.cut(run))
                if len(self._runs) >= _RUN_CACHE_SIZE:
                    self._runs.clear()
                self._runs[run] = cut
            words.extend(cut)
        else:
            words.extend(run)

    def _cut_block(self, block: str, words: list[str]) -> None:
        end = self._route(block)
        position, n, run = 0, len(block), ""
        while position < n:
            after = end[position] + 1
            if after - position == 1:
                run += block[position]
            else:
                if run:
                    self._flush(run, words)
                    run = ""
                words.append(block[position:after])
            position = after
        if run:
            self._flush(run, words)
