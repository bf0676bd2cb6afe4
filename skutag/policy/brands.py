"""What a brand in the product database's lexicon may be, for the API (``PUT /v1/brands/{name}``) and
``skutag brands import --db`` alike."""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from skutag.policy.fields import InvalidInput

NAME_MAX_CHARS = 200
ALIAS_CHARS = (2, 200)  # one character would match almost any text


def check_brand_name(name: str) -> str:
    """A brand name: 1-200 characters, no '/' (the API addresses brands by name in the URL), no NUL."""
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX_CHARS or "/" in name or "\x00" in name:
        raise InvalidInput("name", f"a brand name needs 1-{NAME_MAX_CHARS} characters and no '/'")
    return name


def distinct_aliases(aliases: Iterable[str], name: str) -> list[str]:
    """Stripped aliases, one per spelling that differs in more than case (brands match case-blind), without
    the brand's own name; each 2-200 characters."""
    kept: dict[str, str] = {}
    for alias in (a.strip() for a in aliases):
        if alias and alias.casefold() != name.casefold():
            kept.setdefault(alias.casefold(), alias)
    low, high = ALIAS_CHARS
    for alias in kept.values():
        if not low <= len(alias) <= high or "\x00" in alias:
            raise InvalidInput("aliases", f"alias {alias[:60]!r} needs {low}-{high} characters (one character "
                                          "would match almost any text)")
    return sorted(kept.values())


def check_brand_entry(name: str, aliases: Sequence[str], categories: Sequence[str],
                      check_category: Callable[[str], str]) -> tuple[str, list[str], list[str]]:
    """(name, aliases, categories) as the lexicon keeps them; ``check_category`` normalises a path and refuses
    one the database's taxonomy lacks."""
    name = check_brand_name(name)
    return name, distinct_aliases(aliases, name), [check_category(path) for path in categories]
