"""The service's stored rules on a model's answer (renames, label map, whitelist), as every path applies them."""

from __future__ import annotations

from skutag.fusion.result import Decision, TagResult
from skutag.policy.rules import Rules

OLD, NEW = "Fruit > Banana > Banana", "Fruit > Bananas > Banana"
RULES = Rules(path_aliases={OLD: NEW}, label_map={"Oat-Milk": "Drinks > Plant milk > Oat"},
                     whitelist=["Drinks"])


def test_an_answer_with_an_unreadable_photo_note_still_follows_the_rules():
    noted = TagResult(id="a", label="Banana", path=OLD, confidence=0.7, decision=Decision.REVIEW,
                      error="image: cannot read a.jpg")
    renamed = RULES.apply(noted)
    assert renamed.path == NEW and renamed.error == noted.error
    assert any(reason.startswith("taxonomy:") for reason in renamed.reasons)
    mapped = RULES.apply(TagResult(id="b", label="Oat-Milk", path="Drinks > Milk > Oat-Milk", confidence=0.99,
                                   decision=Decision.AUTO, error="image: cannot read b.jpg"))
    assert mapped.path == "Drinks > Plant milk > Oat" and mapped.decision is Decision.REVIEW  # mapped, then whitelisted


def test_a_failed_row_is_left_as_it_is():
    failed = TagResult.failed("c", "product has neither an image nor a title")
    assert RULES.apply(failed) == failed
