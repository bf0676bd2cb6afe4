"""Policy: the rules every way into the product database follows, in one place outside the HTTP layer.

The HTTP service, ``skutag batch --db``, Celery workers and the CLI call these, so the same product gets the
same answer (and the same bad field the same error) whichever way it comes:

- ``fields``: what a product's id, title, brand, price, photo and category path may be (``InvalidInput``);
- ``renames``: answers under today's category names;
- ``rules``: the stored rules on top of a model's answer (renames, label-map overrides, review whitelist),
  the audit sample, and the save path (``save_answer``).
"""

from .fields import (
    BRAND_MAX_CHARS,
    PRICE_MAX,
    PRODUCT_ID_RE,
    TITLE_MAX_CHARS,
    InvalidInput,
    check_product,
    normalise_path,
)
from .rules import Rules, audit_sampled, install_stored_lexicon, save_answer

__all__ = ["BRAND_MAX_CHARS", "PRICE_MAX", "PRODUCT_ID_RE", "TITLE_MAX_CHARS", "InvalidInput", "Rules",
           "audit_sampled", "check_product", "install_stored_lexicon", "normalise_path", "save_answer"]
