"""jieba tokenisation of titles with a user dictionary built from the taxonomy, brand lexicon and label map.

Each :class:`TitleTokenizer` owns a private ``jieba.Tokenizer()`` (never the global one, so two
tokenizers with different dictionaries never leak into each other) and checks that its user words
really segment as one token. jieba silently ignores what it cannot hold: a word with a space or a
character outside its word pattern (``hello kitty``, ``dr.ci#labo``, ``c'estbon``) is split no matter
what the dictionary says, and a word whose frequency is too low loses to the built-in dictionary.
Those words go through an exact-match pass before jieba, so every user word comes out whole;
:meth:`TitleTokenizer.user_dict_report` says how many words took which route.
"""

from __future__ import annotations

import logging
import re
import threading
from functools import partial
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .normalize import _UNIT_CANON, COUNT_UNITS, normalize_title
from .segment import DagSegmenter

_JIEBA_WORD_RE = re.compile(r"^[\u4E00-\u9FD5a-zA-Z0-9+#&._%\-]+$")  # what jieba's default mode keeps together
_PUNCT_RE = re.compile(r"^[\W_]+$")
_NUMBER_RE = re.compile(r"^\d+(?:\.\d+)?$")
_QUANTITY_RE = re.compile(r"^(\d+(?:\.\d+)?)([a-z\u4e00-\u9fff]{1,3})(?:×\d+)?$")
_MIN_USER_FREQ = 20
# Quantities stay one token (jieba would cut ``3.5g`` into ``3.5`` + ``g`` and ``24瓶`` into ``24`` + ``瓶``).
_QUANTITY_PATTERN = (
    r"\d+(?:\.\d+)?(?:"
    + "|".join(sorted({re.escape(u) for u in _UNIT_CANON.values()}, key=len, reverse=True))
    + r")(?![a-z])|\d+(?:"
    + "|".join(sorted(map(re.escape, COUNT_UNITS), key=len, reverse=True))
    + ")"
)
_init_lock = threading.Lock()
# jieba's segmentation of one space-free chunk of a title, kept per tokenizer: brand names, product words and
# model numbers recur across a catalogue's titles. Bounded: the cache is emptied when it reaches this many chunks.
_CHUNK_CACHE_SIZE = 200_000


@dataclass(frozen=True)
class UserDictReport:
    """How the user words were taken in: by jieba's dictionary, or by the exact-match pre-pass."""

    words: int
    in_jieba: int
    prepass: int
    failed: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"words": self.words, "in_jieba": self.in_jieba, "prepass": self.prepass, "failed": list(self.failed)}


def clean_user_words(words: Iterable[str]) -> list[str]:
    """Normalised, de-duplicated user words; single characters and empty strings dropped."""
    seen: dict[str, None] = {}
    for word in words:
        text = normalize_title(word)
        if len(text) >= 2 and not _NUMBER_RE.match(text) and not _PUNCT_RE.match(text):
            seen.setdefault(text, None)
    return list(seen)


def default_user_words(tree: Any = None, lexicon: Any = None, labelmap: Any = None) -> list[str]:
    """Words from the category tree (names, keywords, synonyms), brand lexicon (brands and aliases)
    and label map (labels). Arguments left as None use the managed tables (``.active()``: the user's edited
    copies, else the bundled defaults) when they can be loaded."""
    words: list[str] = []
    if tree is None:
        from skutag.taxonomy import CategoryTree

        tree = CategoryTree.active()
    words.extend(tree.words())
    if labelmap is None:
        from skutag.taxonomy import LabelMap

        labelmap = LabelMap.active()
    words.extend(labelmap.words())
    if lexicon is None:
        lexicon = _default_lexicon()
    if lexicon is not None:
        words.extend(lexicon_words(lexicon))
    return clean_user_words(words)


def _default_lexicon() -> Any:
    try:
        from skutag.taxonomy.brands import BrandLexicon
    except ModuleNotFoundError:
        return None
    try:
        return BrandLexicon.active()
    except (FileNotFoundError, ValueError) as exc:
        logging.getLogger(__name__).warning("brand lexicon not loaded: %s", exc)
        return None


def read_user_dict(path: str | Path) -> list[str]:
    """Words of a user dictionary file: one per line, jieba's ``word [freq] [tag]`` lines too;
    blank lines and ``#`` comments skipped. Words with spaces are kept whole when the line has no
    frequency column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"user dictionary not found: {path}")
    words = []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            words.append(parts[0])
        else:
            words.append(line)
    return words


def lexicon_brand_names(lexicon: Any) -> list[str]:
    """Canonical brand names of a BrandLexicon (``brands`` as a property or a method)."""
    names = lexicon.brands
    return list(names() if callable(names) else names)


def lexicon_words(lexicon: Any) -> list[str]:
    """Brands and aliases of a BrandLexicon, a mapping brand -> aliases, or an iterable of brand names."""
    words: list[str] = []
    if hasattr(lexicon, "brands") and hasattr(lexicon, "aliases_of"):
        for brand in lexicon_brand_names(lexicon):
            words.append(brand)
            words.extend(lexicon.aliases_of(brand))
    elif isinstance(lexicon, dict):
        for brand, aliases in lexicon.items():
            words.append(brand)
            words.extend([aliases] if isinstance(aliases, str) else list(aliases or ()))
    else:
        words.extend(lexicon)
    return words


class TitleTokenizer:
    """Normalise + segment titles with jieba and a verified user dictionary.

    ``user_words``: extra words to keep whole (brands, category names...). ``use_default_words``
    adds the bundled taxonomy, label map and brand lexicon words. Picklable: the jieba instance is
    rebuilt lazily after unpickling.
    """

    def __init__(
        self,
        user_words: Iterable[str] = (),
        use_default_words: bool = False,
        hmm: bool = True,
        drop_punctuation: bool = True,
        quantity_tokens: bool = True,
    ):
        words = list(user_words)
        if use_default_words:
            words = default_user_words() + words
        self.user_words: tuple[str, ...] = tuple(clean_user_words(words))
        self.hmm = hmm
        self.drop_punctuation = drop_punctuation
        self.quantity_tokens = quantity_tokens
        self._jieba: Any = None
        self._segment: Any = None
        self._chunks: dict[str, list[str]] = {}
        self._prepass_re: re.Pattern[str] | None = None
        self._report: UserDictReport | None = None

    @classmethod
    def from_sources(
        cls, tree: Any = None, lexicon: Any = None, labelmap: Any = None, extra: Iterable[str] = (), **kwargs: Any
    ) -> "TitleTokenizer":
        return cls(user_words=[*default_user_words(tree, lexicon, labelmap), *extra], **kwargs)

    # ------------------------------------------------------------------ jieba set-up
    def _ensure(self) -> Any:
        if self._jieba is None:
            with _init_lock:
                if self._jieba is None:
                    self._setup()
        return self._jieba

    def _setup(self) -> None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        tokenizer = jieba.Tokenizer()
        tokenizer.initialize()
        jieba_words = [w for w in self.user_words if _JIEBA_WORD_RE.match(w)]
        for word in jieba_words:
            freq = max(tokenizer.suggest_freq(word, tune=False), _MIN_USER_FREQ)
            tokenizer.add_word(word, freq=freq)
        failed = [w for w in jieba_words if list(tokenizer.cut(w, HMM=False)) != [w]]
        prepass = [w for w in self.user_words if not _JIEBA_WORD_RE.match(w)] + failed
        alternatives = [re.escape(w) for w in sorted(set(prepass), key=len, reverse=True)]
        if self.quantity_tokens:
            alternatives.append(_QUANTITY_PATTERN)
        if alternatives:
            self._prepass_re = re.compile("|".join(alternatives))
        self._report = UserDictReport(
            words=len(self.user_words),
            in_jieba=len(jieba_words) - len(failed),
            prepass=len(set(prepass)),
            failed=tuple(failed),
        )
        # the HMM route goes through DagSegmenter (jieba's words, faster); without the HMM jieba's own cut
        self._segment = DagSegmenter(tokenizer).cut if self.hmm else partial(tokenizer.cut, HMM=False)
        self._jieba = tokenizer

    def user_dict_report(self) -> UserDictReport:
        self._ensure()
        assert self._report is not None
        return self._report

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for derived in ("_jieba", "_segment", "_prepass_re", "_report", "_chunks"):
            state.pop(derived, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The jieba instance, the pre-pass pattern and the chunk cache are rebuilt after unpickling."""
        self.__dict__.update(state)
        self._jieba, self._segment, self._prepass_re, self._report, self._chunks = None, None, None, None, {}

    # ------------------------------------------------------------------ tokenising
    def _cut(self, text: str, into: list[str]) -> None:
        """jieba's words of ``text``, chunk by chunk: jieba treats whitespace as a boundary it never cuts
        across, so segmenting each space-free chunk alone gives the same words, and a chunk seen before
        is looked up instead of segmented again."""
        chunks = self._chunks
        for chunk in text.split(" "):
            if not chunk:
                continue
            words = chunks.get(chunk)
            if words is None:
                words = list(self._segment(chunk))
                if len(chunks) >= _CHUNK_CACHE_SIZE:
                    chunks.clear()
                chunks[chunk] = words
            into.extend(words)

    def segment(self, normalized: str) -> list[str]:
        """jieba words of an already normalised title (user words whole), spaces and punctuation dropped."""
        self._ensure()
        pieces: list[str] = []
        position = 0
        if self._prepass_re is not None:
            for match in self._prepass_re.finditer(normalized):
                if match.start() > position:
                    self._cut(normalized[position : match.start()], pieces)
                pieces.append(match.group(0))
                position = match.end()
        self._cut(normalized[position:], pieces)
        tokens = []
        for piece in pieces:
            piece = piece.strip()
            if not piece or (self.drop_punctuation and _PUNCT_RE.match(piece)):
                continue
            tokens.append(piece)
        return tokens

    def tokenize(self, title: Any) -> list[str]:
        """Tokens of a raw title. Quantities also give a shape token (``550ml`` -> ``550ml``, ``#ml``;
        a bare number -> ``#num``) so pack sizes generalise across values."""
        return self.tokenize_normalized(normalize_title(title))

    def tokenize_normalized(self, normalized: str) -> list[str]:
        """:meth:`tokenize` for a title already passed through ``normalize_title``."""
        tokens = self.segment(normalized)
        if not self.quantity_tokens:
            return tokens
        out: list[str] = []
        for token in tokens:
            if _NUMBER_RE.match(token):
                out.append("#num")
                continue
            out.append(token)
            match = _QUANTITY_RE.match(token)
            if match:
                out.append("#" + match.group(2))
        return out

    def __call__(self, title: Any) -> list[str]:
        return self.tokenize(title)

    def tokenize_many(self, titles: Sequence[Any]) -> list[list[str]]:
        return [self.tokenize(t) for t in titles]

    def __repr__(self) -> str:
        return f"TitleTokenizer({len(self.user_words)} user words, hmm={self.hmm})"
