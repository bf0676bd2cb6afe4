"""Load the tagger a worker process uses, once, from an importable ``"module:function"`` spec.

The default spec is ``skutag.pipeline:load_pipeline``; the function is called as
``factory(config=..., model_dir=...)`` (only the arguments that are set) and must return an
``skutag.tagger.Tagger``.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable

from skutag.inference import available_cores
from skutag.tagger import Tagger


THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class TaggerLoadError(ValueError):
    """The tagger factory spec cannot be imported or does not give a tagger."""


@dataclass(frozen=True)
class TaggerSpec:
    """Everything a fresh process needs to build its tagger (picklable, JSON-able)."""

    factory: str = "skutag.pipeline:load_pipeline"
    model_dir: str | None = None
    config_file: str | None = None
    threads: int = 0  # 0 = leave the libraries' defaults
    store_url: str | None = None  # product database whose edited brand lexicon the tagger reads with

    def load(self) -> Tagger:
        if self.threads > 0:
            limit_threads(self.threads)
        # a tagger answering for a product database decides as the service does: no audit sample in its
        # decisions (the save path draws the same share, decision.audit_rate, for the database's audit page)
        overrides = {"decision.audit_rate": 0.0} if self.store_url else None
        tagger = load_tagger(self.factory, self.model_dir, self.config_file, self.threads, overrides)
        if self.threads > 0:
            limit_threads(self.threads)  # libraries imported by the factory pick it up now
        if self.store_url:
            follow_stored_lexicon(tagger, self.store_url)
        return tagger


def follow_stored_lexicon(tagger: Tagger, store_url: str) -> int | None:
    """Give ``tagger`` the brand lexicon edited through the service in that database (as ``skutag serve``
    does); its version, or None when none is stored."""
    from skutag.policy.rules import install_stored_lexicon
    from skutag.store import Store

    store = Store.open(store_url)
    try:
        return install_stored_lexicon(store, tagger)
    finally:
        store.close()


def resolve_factory(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TaggerLoadError(f"tagger factory must look like 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TaggerLoadError(f"cannot import tagger factory module {module_name!r}: {exc}") from exc
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise TaggerLoadError(f"{module_name!r} has no {attr!r} (tagger factory {spec!r})")
    if not callable(factory):
        raise TaggerLoadError(f"tagger factory {spec!r} is not callable")
    return factory


def load_tagger(spec: str, model_dir: str | None = None, config_file: str | None = None,
                threads: int = 0, overrides: dict[str, Any] | None = None) -> Tagger:
    """Call the factory named by ``spec`` and check that it returned a tagger.

    With ``threads``, every config section's ``threads`` and ``workers`` fields (vision, OCR ...) are
    capped at it (0 = "library default" counts as unlimited), so processes x threads stay within the cores.
    """
    factory = resolve_factory(spec)
    kwargs: dict[str, Any] = {}
    if model_dir is not None:
        kwargs["model_dir"] = model_dir
    if config_file is not None or threads > 0 or overrides:
        kwargs["config"] = _config_with_threads(config_file, threads).with_overrides(overrides or {})
    tagger = factory(**kwargs)
    if not isinstance(tagger, Tagger):
        raise TaggerLoadError(f"tagger factory {spec!r} returned {type(tagger).__name__}, which is not a "
                              "skutag.tagger.Tagger")
    return tagger


def _config_with_threads(config_file: str | None, threads: int):
    import dataclasses

    from skutag.config import SkutagConfig

    config = SkutagConfig.load(config_file)
    if threads <= 0:
        return config
    overrides = {}
    for name in config.section_names():
        section = getattr(config, name)
        for knob in ("threads", "workers"):  # workers: e.g. OCR reading photos side by side
            if any(f.name == knob for f in dataclasses.fields(section)):
                current = getattr(section, knob)
                overrides[f"{name}.{knob}"] = threads if not current or current > threads else current
    return config.with_overrides(overrides)


def limit_threads(threads: int) -> None:
    """Cap the compute threads of this process (torch, OpenMP/BLAS, OpenCV) at ``threads``."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(threads)


def plan_processes(workers: int, threads: int, cores: int | None = None) -> tuple[int, int]:
    """(processes, threads per process) with processes x threads <= cores; more processes than cores are capped."""
    cores = max(1, cores or available_cores())
    processes = min(workers, cores) if workers > 0 else cores
    per_process = threads if threads > 0 else cores // processes
    per_process = max(1, min(per_process, cores // processes))
    return processes, per_process
