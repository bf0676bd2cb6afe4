"""Tail fine-tuning on CPU: the last blocks of an EfficientNet-Lite retrained on your classes.

The backbone is frozen up to a *cut* (``"5.1"``: after block 1 of stage 5). Photos go through the
frozen part once per view (``CutExtractor``: centre crop, its mirror, random resized crops with
flip and slight colour jitter), and those activations are all the training needs: ``TailClassifier``
trains the remaining blocks + ``conv_head`` + a new head on them (AdamW, one-cycle schedule, label
smoothing, BatchNorm statistics frozen). On a CPU thread that costs ~40 s per epoch for 2,640
GroceryStore photos with efficientnet-lite0.

    from skutag.vision.tail import CutExtractor, TailClassifier
    ext = CutExtractor("efficientnet-lite0", cut="5.1")
    views = [ext.transform(train_photos, view) for view in ("center", "flip", "aug0", "aug1", "aug2", "aug3")]
    tail = TailClassifier("efficientnet-lite0", cut="5.1").fit(views, labels)
    proba = tail.predict_proba([ext.transform(photos, "center"), ext.transform(photos, "flip")])  # flip TTA
    emb = tail.embed(ext.transform(photos, "center"))      # fine-tuned L2-normalised embedding (1280)

Measured (``bench/bench_vision_adapt.py``, GroceryStore val, 81 leaves): lite0 frozen embedding +
LogisticRegression 0.743; tail from cut 5.1, 6 epochs, 6 views, flip TTA 0.82-0.86 (3 seeds).
A fitted ``TailClassifier`` pickles (joblib) with its weights as numpy arrays.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from .backbones import get_backbone
from .image import ImageLimits, ImageSource, load_image
from .preprocess import PreprocessSpec, normalize_batch, resize_crop


@dataclass(frozen=True)
class Cut:
    """Where the frozen part ends: after block ``block`` of stage ``stage`` (timm ``blocks[stage][block]``)."""

    stage: int
    block: int

    @classmethod
    def parse(cls, text: str) -> "Cut":
        try:
            stage, block = (int(part) for part in str(text).split("."))
        except ValueError:
            raise ValueError(f"cut must look like 'STAGE.BLOCK' (e.g. '5.1'), got {text!r}") from None
        return cls(stage, block)

    def check(self, model) -> None:
        if not (0 <= self.stage < len(model.blocks) and 0 <= self.block < len(model.blocks[self.stage])):
            sizes = [len(stage) for stage in model.blocks]
            raise ValueError(f"cut {self.stage}.{self.block} is not a block of this network (blocks per stage {sizes})")


# ---------------------------------------------------------------- views of a photo

def _center(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    return resize_crop(image, spec)


def _flip(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    return np.ascontiguousarray(resize_crop(image, spec)[:, ::-1])


def _full(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(image.resize((spec.size, spec.size), Image.Resampling.BICUBIC), dtype=np.uint8)


def _augmented(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    import torch
    from torchvision import transforms

    torch.manual_seed(seed)
    augment = transforms.Compose([
        transforms.RandomResizedCrop(spec.size, scale=(0.3, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    ])
    return np.asarray(augment(image), dtype=np.uint8)


VIEWS: dict[str, Callable] = {"center": _center, "flip": _flip, "full": _full}
"""Deterministic views; ``aug<N>`` (aug0, aug1, ...) are random views, each seeded by its name and row."""


def view_crop(image, view: str, spec: PreprocessSpec, seed: int = 0) -> np.ndarray:
    """One view of a decoded RGB photo as an SxSx3 uint8 array."""
    if view in VIEWS:
        return VIEWS[view](image, spec, seed)
    if view.startswith("aug") and view[3:].isdigit():
        return _augmented(image, spec, seed)
    raise ValueError(f"unknown view {view!r}: one of {', '.join(VIEWS)} or aug0, aug1, ...")


def _key_seed(view: str, key: str, seed: int) -> int:
    """The random view ``view`` of the photo named ``key`` (e.g. its content hash): the same whatever
    batch or position the photo comes in, so activations can be cached per photo."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{view}:{key}".encode()).digest()[:4], "little")


def _view_seed(view: str, row: int, seed: int) -> int:
    view_seed = sum(ord(c) * 131 ** k for k, c in enumerate(view)) % 100_000
    return seed * 1_000_003 + view_seed * 10_007 + row


# ---------------------------------------------------------------- the frozen part

def _load_network(backbone: str, weights: str | None):
    network = get_backbone(backbone).resolve(weights).build_network().eval()
    if not hasattr(network, "model") or not hasattr(network.model, "blocks"):
        raise ValueError(f"backbone {backbone!r} is not a timm EfficientNet: tail tuning needs blocks/conv_head")
    return network


def _ort_session(path, threads: int):
    """An ONNX Runtime CPU session for one of the tail's exported graphs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _export_onnx(module, path, size: int, output: str | tuple[str, ...]) -> None:
    """Export ``module`` (N x 3 x size x size -> ``output``, one name or several) to ``path``, atomically,
    batch size free."""
    import os
    import warnings

    import torch

    from .export import temporary_path

    outputs = (output,) if isinstance(output, str) else tuple(output)
    tmp = temporary_path(path)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # tracer warnings about shape arithmetic
        torch.onnx.export(module.eval(), (torch.zeros(1, 3, size, size),), str(tmp), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=list(outputs),
                          dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in outputs}})
    os.replace(tmp, path)


def _export_graph(forward: Callable, path, size: int, output: str | tuple[str, ...], *parts) -> None:
    """Export ``forward(*parts, x)`` (``parts``: torch modules) to ``path`` as an ONNX graph."""
    import torch

    class Graph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.parts = torch.nn.ModuleList(parts)

        def forward(self, x):
            return forward(*self.parts, x)

    _export_onnx(Graph(), path, size, output)


def run_to_cut(model, cut: Cut, x):
    """The frozen part of a timm EfficientNet: stem, then every block up to and including the cut."""
    x = model.bn1(model.conv_stem(x))
    for stage in range(cut.stage):
        x = model.blocks[stage](x)
    for block in range(cut.block + 1):
        x = model.blocks[cut.stage][block](x)
    return x


def run_after_cut(model, cut: Cut, x):
    """The rest of the frozen network from the cut's activation: the later blocks, conv_head and bn2
    (what ``forward_features`` ends with); ``run_after_cut(m, c, run_to_cut(m, c, x))`` is the whole."""
    for block in model.blocks[cut.stage][cut.block + 1:]:
        x = block(x)
    for stage in model.blocks[cut.stage + 1:]:
        x = stage(x)
    return model.bn2(model.conv_head(x))


class CutExtractor:
    """Photos -> activations at the cut (float16, N x C x H x W), one call per view.

    ``runtime``: ``onnx`` (the frozen part exported once under ``$SKUTAG_HOME/vision``, ONNX Runtime) or
    ``torch`` (eager)."""

    def __init__(self, backbone: str = "efficientnet-lite0", cut: str = "5.1", weights: str | None = None,
                 threads: int = 1, limits: ImageLimits = ImageLimits(), runtime: str = "onnx"):
        import torch

        if runtime not in ("onnx", "torch"):
            raise ValueError(f"runtime must be 'onnx' or 'torch', got {runtime!r}")
        self.backbone, self.cut, self.threads, self.limits = backbone, Cut.parse(cut), int(threads), limits
        self.runtime, self.weights = runtime, weights
        self.network = _load_network(backbone, weights)
        self.cut.check(self.network.model)
        self.source = get_backbone(backbone).resolve(weights)
        self.spec: PreprocessSpec = self.source.preprocess
        self._torch = torch
        self._session = None

    def _forward(self, crops: list[np.ndarray]) -> np.ndarray:
        batch = normalize_batch(np.stack(crops), self.spec)
        if self.runtime == "onnx":
            return self._onnx_session().run(None, {"input": batch})[0].astype(np.float16)
        torch = self._torch
        with torch.inference_mode():
            act = self._frozen(torch.from_numpy(batch))
        return act.numpy().astype(np.float16)

    def _onnx_session(self):
        if self._session is None:
            from .export import export_dir
            from .networks import freeze_same_padding

            path = export_dir(self.source, None) / f"cut-{self.cut.stage}.{self.cut.block}.onnx"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                # the loaded network itself: fixed pads for this input size change no output
                model, cut = freeze_same_padding(self.network, self.spec.size).model, self.cut
                _export_graph(lambda frozen, x: run_to_cut(frozen, cut, x), path, self.spec.size, "act", model)
            self._session = _ort_session(path, self.threads)
        return self._session

    def _frozen(self, x):
        return run_to_cut(self.network.model, self.cut, x)

    def transform(self, sources: Sequence[ImageSource], view: str = "center", seed: int = 0,
                  batch_size: int = 32) -> np.ndarray:
        """Activations of ``sources`` (paths, bytes or PIL images) for one view. Unreadable photos raise."""
        torch = self._torch
        torch.set_num_threads(self.threads)
        out = []
        for start in range(0, len(sources), batch_size):
            crops = [
                view_crop(load_image(source, self.limits, min_side=self.spec.resize_shorter), view, self.spec,
                          _view_seed(view, start + k, seed))
                for k, source in enumerate(sources[start:start + batch_size])
            ]
            out.append(self._forward(crops))
        if not out:
            raise ValueError("no photos given")
        return np.concatenate(out)

    def transform_views(self, sources: Sequence[ImageSource], views: Sequence[str], keys: Sequence[str],
                        seed: int = 0, batch_size: int = 32) -> dict[str, np.ndarray]:
        """Activations of several views, each photo decoded once. Random views are seeded by the photo's
        ``key`` (its content hash), so a photo's views do not depend on the batch it came in."""
        if len(keys) != len(sources):
            raise ValueError(f"{len(sources)} photos but {len(keys)} keys")
        self._torch.set_num_threads(self.threads)
        out: dict[str, list[np.ndarray]] = {view: [] for view in views}
        for start in range(0, len(sources), batch_size):
            images = [load_image(source, self.limits, min_side=self.spec.resize_shorter)
                      for source in sources[start:start + batch_size]]
            for view in views:
                crops = [view_crop(image, view, self.spec, _key_seed(view, key, seed))
                         for image, key in zip(images, keys[start:start + batch_size])]
                out[view].append(self._forward(crops))
        if not sources:
            raise ValueError("no photos given")
        return {view: np.concatenate(parts) for view, parts in out.items()}


# ---------------------------------------------------------------- the trained part

def build_tail(model, cut: Cut, n_classes: int, dropout: float = 0.2):
    """A torch module: the blocks after ``cut`` + conv_head + bn2 (shared with ``model``) + a new head."""
    import torch
    from torch import nn

    cut.check(model)
    blocks = list(model.blocks[cut.stage][cut.block + 1:]) + [b for stage in model.blocks[cut.stage + 1:] for b in stage]

    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*blocks)
            self.conv_head, self.bn2 = model.conv_head, model.bn2
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(model.num_features, n_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            """The pooled, not yet normalised embedding (what the frozen network's embedding was)."""
            return self.bn2(self.conv_head(self.blocks(x))).mean((2, 3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.drop(self.features(x)))

    return Tail()


def _as_views(X) -> list[np.ndarray]:
    views = [np.asarray(v) for v in X] if isinstance(X, (list, tuple)) else [np.asarray(X)]
    if not views or any(v.ndim != 4 for v in views):
        raise ValueError("X must be an N x C x H x W activation array, or a list of them (views of the same rows)")
    if len({v.shape for v in views}) != 1:
        raise ValueError(f"all views must have the same shape, got {sorted({v.shape for v in views})}")
    return views


class TailClassifier(ClassifierMixin, BaseEstimator):
    """Trains the network after the cut + a new head on cut activations (``CutExtractor``).

    ``X``: an N x C x H x W array, or a list of such arrays, one per view of the same N rows; in
    ``fit`` each epoch draws one view per row, in ``predict_proba`` probabilities are averaged over views.

    Parameters: ``backbone``/``cut``/``weights`` must match the extractor; ``epochs``, ``lr`` (blocks),
    ``head_lr``, ``batch_size``, ``weight_decay``, ``label_smoothing``, ``dropout``; ``threads`` for torch;
    ``random_state`` seeds the initialisation, the view draws and the batch order.
    """

    def __init__(self, backbone: str = "efficientnet-lite0", cut: str = "5.1", weights: str | None = None,
                 epochs: int = 6, lr: float = 3e-4, head_lr: float = 3e-3, batch_size: int = 64,
                 weight_decay: float = 1e-4, label_smoothing: float = 0.1, dropout: float = 0.2,
                 threads: int = 1, random_state: int = 0):
        self.backbone = backbone
        self.cut = cut
        self.weights = weights
        self.epochs = epochs
        self.lr = lr
        self.head_lr = head_lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.label_smoothing = label_smoothing
        self.dropout = dropout
        self.threads = threads
        self.random_state = random_state

    def _new_module(self, n_classes: int):
        return build_tail(_load_network(self.backbone, self.weights).model, Cut.parse(self.cut), n_classes,
                          self.dropout)

    def fit(self, X, y) -> "TailClassifier":
        import torch
        from torch import nn

        views = _as_views(X)
        y = np.asarray(y)
        if len(y) != len(views[0]):
            raise ValueError(f"{len(views[0])} rows of activations but {len(y)} labels")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("TailClassifier needs at least two classes")
        torch.set_num_threads(int(self.threads))
        torch.manual_seed(int(self.random_state))
        rng = np.random.default_rng(int(self.random_state))
        tail = self._new_module(len(self.classes_))
        head = list(tail.head.parameters())
        body = [p for name, p in tail.named_parameters() if not name.startswith("head.")]
        for p in tail.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW([{"params": body, "lr": self.lr}, {"params": head, "lr": self.head_lr}],
                                      weight_decay=self.weight_decay)
        n, batch = len(codes), int(self.batch_size)
        steps = max(1, int(self.epochs) * -(-n // batch))
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[self.lr, self.head_lr],
                                                       total_steps=steps, pct_start=0.15)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=float(self.label_smoothing))
        targets = torch.from_numpy(codes).long()
        self.history_: list[float] = []
        for _ in range(int(self.epochs)):
            tail.train()
            for module in tail.modules():  # BN statistics stay those of ImageNet: small data, small batches
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
            pick, order, total = rng.integers(0, len(views), size=n), rng.permutation(n), 0.0
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                x = torch.from_numpy(np.stack([views[pick[i]][i] for i in idx]).astype(np.float32))
                loss = loss_fn(tail(x), targets[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(idx)
            self.history_.append(total / n)
        self.state_ = {k: v.detach().numpy().copy() for k, v in tail.state_dict().items()}
        self.n_features_in_ = int(np.prod(views[0].shape[1:]))
        self._module = tail.eval()
        return self

    def _fitted_module(self):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "state_")
        if getattr(self, "_module", None) is None:
            import torch

            module = self._new_module(len(self.classes_))
            module.load_state_dict({k: torch.from_numpy(v) for k, v in self.state_.items()}, strict=True)
            self._module = module.eval()
        return self._module

    def _run(self, X, fn: Callable, batch_size: int = 128) -> list[np.ndarray]:
        import torch

        module = self._fitted_module()
        torch.set_num_threads(int(self.threads))
        out = []
        with torch.inference_mode():
            for view in _as_views(X):
                parts = [fn(module, torch.from_numpy(view[s:s + batch_size].astype(np.float32))).numpy()
                         for s in range(0, len(view), batch_size)]
                out.append(np.concatenate(parts))
        return out

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities (columns in ``classes_`` order), averaged over the views given."""
        return np.mean(self._run(X, lambda m, x: torch_softmax(m(x))), axis=0)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def embed(self, X) -> np.ndarray:
        """The fine-tuned embedding (L2-normalised per view, averaged over views, normalised again)."""
        per_view = [_l2(v) for v in self._run(X, lambda m, x: m.features(x))]
        return _l2(np.mean(per_view, axis=0)).astype(np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_module", None)  # rebuilt from state_ on first use
        return state


def torch_softmax(logits):
    import torch

    return torch.softmax(logits, dim=1)


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def out_of_fold_embeddings(tail: TailClassifier, X, y, n_splits: int = 5,
                           folds: Iterable[tuple[np.ndarray, np.ndarray]] | None = None,
                           embed_views: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Fine-tuned embeddings of the training rows, each from a tail fitted without that row's fold.

    What a downstream model trained on these rows (the fusion stacker) must see: embeddings from a
    tail that saw the row are fitted to its label and would make the vision block look surer than
    it is on new photos. Costs ``n_splits`` fits; the embedding averages ``embed_views`` (activations of
    the views serving will embed, rows as in ``X``; default: the first two views of ``X``, the centre view
    and its mirror). ``folds``: (fit rows, held rows) pairs to use instead of shuffled stratified folds
    (e.g. folds that keep near-duplicate photos together).
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    views, y = _as_views(X), np.asarray(y)
    embedded = _as_views(list(embed_views)) if embed_views is not None else views[:2]
    if folds is None:
        _, counts = np.unique(y, return_counts=True)
        splitter = StratifiedKFold(n_splits=min(n_splits, int(counts.min())), shuffle=True,
                                   random_state=int(tail.random_state))
        folds = splitter.split(views[0], y)
    out = np.zeros((len(y), 0), dtype=np.float32)
    for fit_rows, held_rows in folds:
        fold_tail = clone(tail).fit([v[fit_rows] for v in views], y[fit_rows])
        emb = fold_tail.embed([v[held_rows] for v in embedded])
        if out.shape[1] == 0:
            out = np.zeros((len(y), emb.shape[1]), dtype=np.float32)
        out[held_rows] = emb
    return out


# ---------------------------------------------------------------- serving

_GRAPH_LOCK = threading.RLock()
"""Held while a tail's serving graph is exported or quantized."""

DEFAULT_CUTS: dict[str, str] = {"efficientnet-lite0": "5.1", "efficientnet-lite2": "5.2"}
"""Where the frozen part ends by default, per backbone (chosen on GroceryStore, bench_vision_adapt)."""


def default_cut(backbone: str) -> str:
    try:
        return DEFAULT_CUTS[backbone]
    except KeyError:
        raise ValueError(f"tail fine-tuning needs an EfficientNet backbone ({', '.join(DEFAULT_CUTS)}); "
                         f"{backbone!r} is not one: turn vision.tail off or set vision.tail_cut for your "
                         "own timm EfficientNet weights") from None


def _tuned_forward(frozen, tail, cut: Cut, x):
    return tail.features(run_to_cut(frozen, cut, x))


def _joint_forward(frozen, tail, cut: Cut, x):
    act = run_to_cut(frozen, cut, x)
    embedding = frozen.forward_head(run_after_cut(frozen, cut, act), pre_logits=True)
    return frozen.get_classifier()(embedding), embedding, tail.features(act)


@dataclass
class VisionTail:
    """A fitted tail and how to run it on photos; what a model bundle keeps and serving runs.

    ``embed(photos)`` gives the fine-tuned embedding of each photo (``views`` averaged: training sets the
    centre crop, its mirror and the whole photo by default, ``skutag.tail_training.serving_views``), in
    place of the backbone's own embedding.
    """

    classifier: TailClassifier
    views: tuple[str, ...] = ("center", "flip")
    threads: int = 1
    runtime: str = "onnx"
    """``onnx``: the frozen part and the tail exported as one ONNX graph (cached by digest under
    ``$SKUTAG_HOME/vision``) and run by ONNX Runtime; ``torch``: eager PyTorch, as in training."""
    joint: bool = True
    """Serving computes the plain network's labels in the same pass as the tuned embedding where it can
    (``label_and_embed``); False: two separate graphs (what ``bench_tail_serving`` compares against)."""
    int8: bool = False
    """ONNX Runtime serving on static INT8 copies of the graphs (QDQ, per-channel; the ImageNet classifier
    stays fp32), quantized once per tail on the ``calibration_dir`` photos: what ``vision.int8`` asks."""
    calibration_dir: str = ""
    """Photos INT8 is calibrated on; empty: the bundled ``models/calibration`` photos."""
    _extractor: CutExtractor | None = field(default=None, init=False, repr=False, compare=False)
    _digest: str = field(default="", init=False, repr=False, compare=False)
    _session: Any = field(default=None, init=False, repr=False, compare=False)
    _joint: Any = field(default=None, init=False, repr=False, compare=False)
    _files: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _calibrations: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _source_id: tuple[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def backbone(self) -> str:
        return self.classifier.backbone

    @property
    def cut(self) -> str:
        return self.classifier.cut

    @property
    def digest(self) -> str:
        """SHA-256 over the tail's weights and views: what cached embeddings are keyed by."""
        if not self._digest:
            h = hashlib.sha256(f"{self.backbone}|{self.cut}|{','.join(self.views)}".encode())
            for name in sorted(self.classifier.state_):
                h.update(name.encode())
                h.update(np.ascontiguousarray(self.classifier.state_[name]).tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def extractor(self) -> CutExtractor:
        if self._extractor is None:
            self._extractor = CutExtractor(self.backbone, self.cut, self.classifier.weights, threads=self.threads)
        return self._extractor

    def embed(self, sources: Sequence[ImageSource], keys: Sequence[str] | None = None) -> list[np.ndarray | None]:
        """One fine-tuned embedding per photo; None for a photo that cannot be decoded."""
        keys = list(keys) if keys is not None else [str(i) for i in range(len(sources))]
        out: list[np.ndarray | None] = [None] * len(sources)
        extractor = self.extractor()
        readable, images = [], []
        for i, source in enumerate(sources):
            try:
                images.append(load_image(source, extractor.limits, min_side=extractor.spec.resize_shorter))
                readable.append(i)
            except Exception:  # noqa: BLE001 - the vision stage reports the photo's error
                continue
        if not readable:
            return out
        read_keys = [keys[i] for i in readable]
        if self.runtime == "onnx":
            embeddings = self._embed_onnx(images, read_keys)
        else:
            acts = extractor.transform_views(images, self.views, read_keys)
            self.classifier.threads = self.threads
            embeddings = self.classifier.embed([acts[view] for view in self.views])
        for i, embedding in zip(readable, embeddings):
            out[i] = embedding
        return out

    # ------------------------------------------------------------------ labels and tuned embedding at once
    JOINT_VIEWS = frozenset({"center", "flip"})
    """Views the joint pass serves from the centre crop it already has; other deterministic views (the
    whole photo) are cut from the same decode and run through the tuned graph beside it."""

    def serves_labels_of(self, model) -> bool:
        """Whether ``label_and_embed`` can stand in for ``model.predict`` + ``embed``: both on ONNX Runtime
        in the same precision (fp32, or INT8 both), the same backbone and weights, and serving views that
        include the centre crop and are all deterministic (no random ``aug`` views)."""
        if self._source_id is None:  # resolving hashes the weights file: once per tail
            source = get_backbone(self.backbone).resolve(self.classifier.weights)
            self._source_id = (source.model_id, source.version)
        return (self.joint and self.runtime == "onnx" and model.runtime == "onnx" and bool(model.int8) == self.int8
                and "center" in self.views and set(self.views) <= set(VIEWS)
                and (model.model_id, model.model_version) == self._precision_id())

    def _precision_id(self) -> tuple[str, str]:
        model_id, version = self._source_id
        return model_id, version + ("+int8" if self.int8 else "")  # how VisionModel names its INT8 export

    def label_and_embed(self, model, sources: Sequence[ImageSource], top_k: int = 5, batch_size: int = 16,
                        progress: Callable[[int], None] | None = None) -> tuple[list, list[np.ndarray | None]]:
        """``model.predict(sources)`` and ``embed(sources)`` with the frozen part run once per view: one
        graph gives the plain network's labels and embedding and the tuned embedding of the centre crop,
        the tuned graph the mirror's and the whole photo's (where ``views`` has them). Check
        ``serves_labels_of(model)`` first."""
        if not self.serves_labels_of(model):
            raise ValueError(f"this tail ({self.backbone}, {self.runtime}, views {self.views}) cannot serve "
                             f"labels for {model!r}")
        k = max(1, min(int(top_k), len(model.labels)))
        results, embeddings = [], []
        spec, extra = model.preprocess, [view for view in self.views if view not in self.JOINT_VIEWS]
        other_views = (lambda image: [view_crop(image, view, spec) for view in extra]) if extra else None
        for start in range(0, len(sources), batch_size):
            chunk = sources[start:start + batch_size]
            crops, others, positions, errors = model.load_batch_with(chunk, other_views)
            outputs, tuned = None, [None] * len(chunk)
            if crops:
                batch = normalize_batch(np.stack(crops), model.preprocess)
                logits, plain, center = self._joint_session().run(None, {"input": batch})
                per_view = [_l2(center)]
                if "flip" in self.views:  # the mirror of a normalised crop is the normalised mirror
                    mirrored = np.ascontiguousarray(batch[:, :, :, ::-1])
                    per_view.append(_l2(self._onnx_session().run(None, {"input": mirrored})[0]))
                for index in range(len(extra)):  # the whole photo: cut from the same decode, tuned graph
                    per_view.append(self._tuned_features(np.stack([views[index] for views in others]), spec))
                for row, embedding in zip(positions, _l2(np.mean(per_view, axis=0)).astype(np.float32)):
                    tuned[row] = embedding
                outputs = (logits, plain)
            results.extend(model.results_from_outputs(chunk, positions, outputs, errors, k))
            embeddings.extend(tuned)
            if progress is not None:
                progress(len(chunk))
        return results, embeddings

    def _tuned_features(self, crops: np.ndarray, spec: PreprocessSpec, batch_size: int = 32) -> np.ndarray:
        """The tuned graph's L2-normalised features of N x S x S x 3 uint8 crops."""
        session = self._onnx_session()
        parts = [session.run(None, {"input": normalize_batch(crops[start:start + batch_size], spec)})[0]
                 for start in range(0, len(crops), batch_size)]
        return _l2(np.concatenate(parts))

    def _joint_session(self):
        return self._opened("_joint", self._joint_file())

    def _joint_file(self):
        """Photo -> (ImageNet logits, frozen embedding, tuned features): the frozen part once, then the
        network's own rest and the tuned tail side by side. Exported once per tail."""
        return self._served("-joint", ("logits", "embedding", "features"), _joint_forward)

    # ------------------------------------------------------------------ ONNX Runtime
    def _embed_onnx(self, images: list, keys: list[str], batch_size: int = 32) -> np.ndarray:
        spec, per_view = self.extractor().spec, []
        for view in self.views:
            parts = []
            for start in range(0, len(images), batch_size):
                crops = [view_crop(image, view, spec, _key_seed(view, key, 0))
                         for image, key in zip(images[start:start + batch_size], keys[start:start + batch_size])]
                parts.append(self._tuned_features(np.stack(crops), spec))
            per_view.append(np.concatenate(parts))
        return _l2(np.mean(per_view, axis=0)).astype(np.float32)

    def _onnx_session(self):
        return self._opened("_session", self._onnx_file())

    def _opened(self, attr: str, path):
        """The ONNX Runtime session of ``path`` kept in ``attr``; opened again when the file changed (INT8
        switched on or off)."""
        opened = getattr(self, attr)
        if opened is None or opened[0] != path:
            opened = (path, _ort_session(path, self.threads))
            setattr(self, attr, opened)
        return opened[1]

    def _onnx_file(self):
        """The frozen part + the fine-tuned tail, photo -> pooled features, exported once per tail."""
        return self._served("", "features", _tuned_forward)

    def _served(self, suffix: str, outputs: str | tuple[str, ...], forward: Callable):
        """The graph serving runs: the fp32 export, or its INT8 copy (``int8``); found once per setting.
        Exporting and quantizing take seconds: one thread at a time (the service tags side by side)."""
        key = (suffix, self.precision)
        with _GRAPH_LOCK:
            if key not in self._files or not self._files[key].is_file():
                fp32 = self._exported(suffix, outputs, forward)
                self._files[key] = self._int8_copy(fp32) if self.int8 else fp32
            return self._files[key]

    @property
    def precision(self) -> str:
        """``fp32``, or ``int8-<calibration key>`` (settings, preprocessing and photos): what the served
        embeddings depend on besides the weights (feature caches are keyed by it)."""
        if not self.int8:
            return "fp32"
        if self.calibration_dir not in self._calibrations:
            from .export import calibration_images, calibration_key

            photos = calibration_images(self.calibration_dir or None)
            self._calibrations[self.calibration_dir] = calibration_key(photos, self.extractor().spec)
        return f"int8-{self._calibrations[self.calibration_dir]}"

    def _int8_copy(self, fp32):
        from .export import calibration_images, quantize_int8

        photos, spec = calibration_images(self.calibration_dir or None), self.extractor().spec
        target = fp32.with_name(f"{fp32.stem}.{self.precision}.onnx")
        return quantize_int8(fp32, target, photos, spec, keep_fp32=("logits",))

    def _exported(self, suffix: str, outputs: str | tuple[str, ...], forward: Callable):
        """``forward(frozen_model, tail, cut, x)`` exported as an ONNX graph (once per tail) with the network
        already loaded (its TF-"SAME" pads fixed for the input size) and the fitted tail."""
        from .export import default_cache_dir
        from .networks import freeze_same_padding

        path = default_cache_dir() / "tails" / f"{self.backbone}-{self.digest[:24]}{suffix}.onnx"
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        size = self.extractor().spec.size
        frozen = freeze_same_padding(self.extractor().network, size).model
        cut = Cut.parse(self.cut)
        _export_graph(lambda frozen, tail, x: forward(frozen, tail, cut, x), path, size, outputs,
                      frozen, self.classifier._fitted_module())
        return path

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_extractor"] = None
        state["_session"] = None
        state["_joint"] = None
        state["_files"], state["_calibrations"] = {}, {}
        state["_source_id"] = None  # resolved again where the bundle is loaded
        state["int8"], state["calibration_dir"] = False, ""  # serving settings: the collector sets them
        return state
