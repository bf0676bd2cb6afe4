"""Config sections owned by the fusion stage: how the fusion model is trained, and how it decides.

Both are frozen dataclasses registered in ``skutag.config.SECTION_REGISTRY`` as ``fusion`` and
``decision``; every field can be set from a config file, ``SKUTAG_FUSION__<FIELD>`` /
``SKUTAG_DECISION__<FIELD>`` environment variables, or flags.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

MODALITIES: tuple[str, ...] = ("vision", "ocr", "title", "price")


@dataclass(frozen=True)
class FusionConfig:
    """Training and inference settings of the fusion classifier."""

    # modalities the trained model uses (a modality absent from the training data is skipped)
    modalities: tuple[str, ...] = MODALITIES
    # folds for the out-of-fold per-modality probabilities the stack is trained on
    cv: int = 5
    # False: folds are contiguous runs of catalog rows within each class, so near-duplicate photos of one
    # session stay on one side; True: shuffled stratified folds
    cv_shuffle: bool = False
    # base estimator per modality, by name in fusion.estimators.BASE_ESTIMATORS
    vision_estimator: str = "linear_svc"
    ocr_estimator: str = "linear_svc"
    # titles: one LinearSVC per node of the category tree (docs/taxonomy-and-text.md, "The title model")
    title_estimator: str = "hierarchical_svc"
    price_estimator: str = "price_density"
    # regularisation of the stacker's class-specific modality weights (larger: closer to one weight per modality)
    meta_l2: float = 1.0
    # share of training rows replayed with modalities dropped, so rows with a modality missing work
    modality_dropout: float = 0.3
    # "temperature" (fitted on out-of-fold stack outputs) or "none"
    calibration: str = "temperature"
    # alternatives returned per product
    top_k: int = 5
    # vision labels kept per image as features (top-k probabilities)
    vision_top_k: int = 5
    # ... when the model has a fine-tuned vision tail (vision.tail): its embedding already carries what the
    # backbone's ImageNet labels say, and the labels then cost accuracy (docs/fusion.md)
    vision_top_k_with_tail: int = 0
    # OCR text n-grams: "prominence" (each line weighted by its size and closeness to the photo's centre, to
    # the 4th power: the product's own label over a neighbour's on the shelf; docs/fusion.md) or "flat"
    # (every line read counts the same; bundles trained before it)
    ocr_text_weighting: str = "prominence"
    # OCR gating: "auto" (run OCR only when it can change the answer), "always" or "never"
    ocr_gate: str = "auto"
    # run OCR when the confidence without OCR is below this ...
    ocr_gate_confidence: float = 0.9
    # ... or when the top candidates differ by brand (brand-sensitive categories)
    ocr_gate_brand_sensitive: bool = True
    # ... or when the leading candidate is brand-sensitive and the confidence without OCR is below this:
    # variants of one brand look alike, the text on the package decides (chosen by bench_fusion gating,
    # docs/fusion.md)
    ocr_gate_brand_confidence: float = 0.98
    # candidates (by rank) looked at to decide whether the answer is brand-sensitive
    ocr_gate_candidates: int = 3
    # fit the two confidences above at training (fusion/gate.py): at most these, the pair that reads the fewest
    # training rows (out of fold; a calibration set's rows when given) and every one the text fixed; off: these
    # serve as they are (fitted on training rows it can skip photos the text would fix: docs/scale-out.md)
    ocr_gate_fit: bool = False
    # which training photos OCR reads (fusion/train_gate.py): "auto" (a random sample, every photo of a category
    # the sample finds brands in, and the photos a model without OCR gets wrong or is unsure of) or "all"
    ocr_train_gate: str = "auto"
    # ... the random sample's share of the training photos
    ocr_train_sample: float = 0.25
    # cache per-image vision/OCR outputs by content hash under SKUTAG_HOME
    cache_features: bool = True
    # cold start: weight of each evidence source when scoring taxonomy leaves without training data
    cold_start_vision_weight: float = 1.0
    cold_start_title_weight: float = 1.5
    cold_start_brand_weight: float = 1.0
    # loading a bundle trained with another brand lexicon / taxonomy version: warn (False) or fail (True)
    strict_versions: bool = False
    # retraining on corrections updates a model that can take them incrementally (skutag/updating.py) until the
    # rows corrected since its last full fit pass this share of its training rows; 0: always a full refit
    full_refit_share: float = 0.05
    # keep the training rows' features in the bundle (training_features.npz, 8 bytes per stored value): an
    # incremental update then featurizes only the corrections; off: smaller bundles, updates featurize every row
    keep_training_features: bool = True
    # threads for the per-modality fits (folds run side by side); -1: one per CPU, 1: sequential
    n_jobs: int = -1
    random_state: int = 0
    # out-of-fold answers (what the temperature, the auto thresholds and the OCR gate are fitted on) keep photo
    # series together: "photos" (near-duplicate shots of one category, skutag/grouping.py) or "none"
    oof_groups: str = "photos"
    # two photos of one category at least this alike (cosine of the backbone's embeddings) are one series
    group_similarity: float = 0.9

    def __post_init__(self) -> None:
        if self.ocr_train_gate not in ("auto", "all"):
            raise ValueError(f"fusion.ocr_train_gate must be 'auto' or 'all', got {self.ocr_train_gate!r}")
        _check_share("fusion.ocr_train_sample", self.ocr_train_sample)


@dataclass(frozen=True)
class DecisionConfig:
    """When a tag is applied automatically, suggested for review, or left to a human."""

    # the article's global threshold: auto-tag at or above this confidence
    auto_threshold: float = 0.6
    # below auto but at or above this: review tier (a human confirms a suggestion); below: manual
    review_threshold: float = 0.25
    # per-class auto thresholds chosen on held-out (out-of-fold) predictions for target_precision
    per_class_thresholds: bool = True
    target_precision: float = 0.95
    # classes with fewer held-out predictions than this take the pooled cut (fusion/thresholds.py)
    min_class_support: int = 5
    # "bound": cuts on a lower bound of each class's precision (fusion/thresholds.py); "empirical": skutag 0.1's
    threshold_method: str = "bound"
    # the bound is this one-sided quantile of the Beta posterior of a class's precision
    threshold_confidence: float = 0.75
    # pseudo-answers at the pooled precision added to a class's own (how far few answers lean on all classes)
    threshold_prior_rows: float = 20.0
    # category paths (or path prefixes, levels joined by " > ") that always go to review
    always_review: tuple[str, ...] = ()
    # share of auto-tagged items sent to review anyway as a random audit sample (deterministic per id)
    audit_rate: float = 0.02
    audit_seed: int = 0
    # rule engine: label synonyms (alias -> canonical leaf label), banned labels, path consistency
    synonyms: dict[str, str] = field(default_factory=dict)
    banned_labels: tuple[str, ...] = ()
    # a predicted path must exist in the model's category tree and end in its label
    path_consistency: bool = True
    # when no leaf is confident enough, suggest the most confident parent path for review
    backoff_to_parent: bool = True
    # optional YAML/JSON file with "synonyms", "banned_labels", "always_review" (merged with the above)
    rules_file: str | None = None

    def __post_init__(self) -> None:
        for name in _DECISION_SHARES:
            _check_share(f"decision.{name}", getattr(self, name))
        if self.review_threshold > self.auto_threshold:
            raise ValueError(f"decision.review_threshold ({self.review_threshold}) must not be above "
                             f"decision.auto_threshold ({self.auto_threshold})")
        if self.threshold_method not in ("bound", "empirical"):
            raise ValueError(f"decision.threshold_method must be 'bound' or 'empirical', got {self.threshold_method!r}")
        if not 0.5 <= self.threshold_confidence < 1.0:
            raise ValueError(f"decision.threshold_confidence must be in [0.5, 1), got {self.threshold_confidence}")
        if self.threshold_prior_rows < 0:
            raise ValueError(f"decision.threshold_prior_rows must be >= 0, got {self.threshold_prior_rows}")
        if not isinstance(self.min_class_support, numbers.Integral) or self.min_class_support < 0:
            raise ValueError(f"decision.min_class_support must be a whole number >= 0, got {self.min_class_support!r}")


# DecisionConfig fields that are confidences, precisions or shares: each must lie in [0, 1]
_DECISION_SHARES = ("auto_threshold", "review_threshold", "target_precision", "audit_rate")


def _check_share(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{key} must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} must be between 0 and 1, got {value!r}")
