"""Command-line flags onto the one config object: defaults < --config FILE < SKUTAG_* environment < flags."""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from skutag.cli import UserFacingError


def load_config(args: argparse.Namespace, flags: Mapping[str, str] | None = None, **overrides: Any):
    """The ``SkutagConfig`` a command runs with. ``flags``: config key -> the ``args`` attribute holding its flag
    (absent or None: not given); ``overrides``: more dotted keys (``{"fusion.cv": 3}``) as keyword arguments
    with ``__`` for the dot. A value the config refuses is a ``UserFacingError`` naming its key."""
    from skutag.config import ConfigError, SkutagConfig

    given = {key: getattr(args, attribute, None) for key, attribute in (flags or {}).items()}
    given.update({key.replace("__", "."): value for key, value in overrides.items()})
    try:
        return SkutagConfig.load(getattr(args, "config", None), overrides=given)
    except (ConfigError, ValueError) as exc:
        raise UserFacingError(str(exc)) from None
