"""Tail fine-tuning on CPU: the last blocks of an EfficientNet-Lite retrained on your classes.

The backbone is frozen up to a *cut* (``"5.1"``: after block 1 of stage 5). Photos go through the
frozen part once per view (``CutExtractor``: centre crop, its mirror, random resized crops with
flip and slight colour jitter), and those activations are all the training needs: ``TailClassifier``
trains the remaining blocks + ``conv_head`` + a new head on them (AdamW, one-cycle schedule, label
smoothing, BatchNorm statistics frozen). ``serving_tail`` exports a fitted classifier's serving graph into the
torch-free ``VisionTail`` a model bundle keeps::

    from skutag.vision.tail.train import CutExtractor, TailClassifier, serving_tail
    ext = CutExtractor("efficientnet-lite0", cut="5.1")
    views = [ext.transform(train_photos, view) for view in ("center", "flip", "aug0", "aug1", "aug2", "aug3")]
    tail = TailClassifier("efficientnet-lite0", cut="5.1").fit(views, labels)
    proba = tail.predict_proba([ext.transform(photos, "center"), ext.transform(photos, "flip")])  # flip TTA
    emb = tail.embed(ext.transform(photos, "center"))      # fine-tuned L2-normalised embedding (1280)
    served = serving_tail(tail, views=("center", "flip"))  # what serving runs (ONNX Runtime only)

Costs and accuracy (``bench/bench_vision_adapt.py``): ``vision/README.md``. A fitted ``TailClassifier``
pickles (joblib) with its weights as numpy arrays.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from ..backbones import get_backbone
from ..image import ImageLimits, ImageSource, load_image
from ..preprocess import PreprocessSpec, normalize_batch
from .network import build_tail, cut_graph, load_network, run_to_cut, serving_graph, write_atomically
from .serve import VisionTail
from .views import Cut, is_random_view, key_seed, l2_normalize, row_seed
from .views import view_crop as deterministic_view_crop


def augmented_crop(image, spec: PreprocessSpec, seed: int) -> np.ndarray:
    """A random resized crop of the photo, maybe mirrored, slightly colour-jittered; seeded."""
    import torch
    from torchvision import transforms

    torch.manual_seed(seed)
    augment = transforms.Compose([
        transforms.RandomResizedCrop(spec.size, scale=(0.3, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    ])
    return np.asarray(augment(image), dtype=np.uint8)


def view_crop(image, view: str, spec: PreprocessSpec, seed: int = 0) -> np.ndarray:
    """One view of a decoded RGB photo as an SxSx3 uint8 array: a deterministic one or ``aug<N>``."""
    if is_random_view(view):
        return augmented_crop(image, spec, seed)
    return deterministic_view_crop(image, view, spec, seed)


# ---------------------------------------------------------------- the frozen part

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
        self.network = load_network(backbone, weights)
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
            act = run_to_cut(self.network.model, self.cut, torch.from_numpy(batch))
        return act.numpy().astype(np.float16)

    def _onnx_session(self):
        if self._session is None:
            from skutag.inference import onnx_session

            from ..export import export_dir

            path = export_dir(self.source, None) / f"cut-{self.cut.stage}.{self.cut.block}.onnx"
            if not path.is_file():
                write_atomically(path, cut_graph(self.network, self.cut, self.spec.size))
            self._session = onnx_session(path, self.threads)
        return self._session

    def transform(self, sources: Sequence[ImageSource], view: str = "center", seed: int = 0,
                  batch_size: int = 32) -> np.ndarray:
        """Activations of ``sources`` (paths, bytes or PIL images) for one view. Unreadable photos raise."""
        self._torch.set_num_threads(self.threads)
        out = []
        for start in range(0, len(sources), batch_size):
            crops = [
                view_crop(load_image(source, self.limits, min_side=self.spec.resize_shorter), view, self.spec,
                          row_seed(view, start + k, seed))
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
                crops = [view_crop(image, view, self.spec, key_seed(view, key, seed))
                         for image, key in zip(images, keys[start:start + batch_size])]
                out[view].append(self._forward(crops))
        if not sources:
            raise ValueError("no photos given")
        return {view: np.concatenate(parts) for view, parts in out.items()}


# ---------------------------------------------------------------- the trained part

def as_views(X) -> list[np.ndarray]:
    """``X`` (one activation array, or a list of them: views of the same rows) as a list of 4-d arrays."""
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
        return build_tail(load_network(self.backbone, self.weights).model, Cut.parse(self.cut), n_classes,
                          self.dropout)

    def fit(self, X, y) -> "TailClassifier":
        import torch
        from torch import nn

        views = as_views(X)
        y = np.asarray(y)
        if len(y) != len(views[0]):
            raise ValueError(f"{len(views[0])} rows of activations but {len(y)} labels")
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("TailClassifier needs at least two classes")
        torch.set_num_threads(int(self.threads))
        torch.manual_seed(int(self.random_state))
        rng = np.random.default_rng(int(self.random_state))
        # channels-last: oneDNN's convolution kernels (the depthwise backward above all) run faster on it; the
        # weights are the same tensors, stored as the ONNX export and ``state_`` expect
        tail = self._new_module(len(self.classes_)).to(memory_format=torch.channels_last)
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
                x = x.contiguous(memory_format=torch.channels_last)
                loss = loss_fn(tail(x), targets[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += float(loss.detach()) * len(idx)
            self.history_.append(total / n)
        self.state_ = {k: v.detach().contiguous().numpy().copy() for k, v in tail.state_dict().items()}
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
            for view in as_views(X):
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
        per_view = [l2_normalize(v) for v in self._run(X, lambda m, x: m.features(x))]
        return l2_normalize(np.mean(per_view, axis=0)).astype(np.float32)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_module", None)  # rebuilt from state_ on first use
        return state


def torch_softmax(logits):
    import torch

    return torch.softmax(logits, dim=1)


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

    views, y = as_views(X), np.asarray(y)
    embedded = as_views(list(embed_views)) if embed_views is not None else views[:2]
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


# ---------------------------------------------------------------- what serving keeps

def tail_digest(classifier: TailClassifier, views: Sequence[str]) -> str:
    """SHA-256 over the fitted tail's weights and serving views: what cached embeddings are keyed by."""
    h = hashlib.sha256(f"{classifier.backbone}|{classifier.cut}|{','.join(views)}".encode())
    for name in sorted(classifier.state_):
        h.update(name.encode())
        h.update(np.ascontiguousarray(classifier.state_[name]).tobytes())
    return h.hexdigest()


def serving_tail(classifier: TailClassifier, views: Sequence[str] = ("center", "flip"), threads: int = 1,
                 joint: bool = True) -> VisionTail:
    """The serving object of a fitted tail: its one ONNX graph (fp32; plain labels and tuned features from a
    shared pass of the frozen part, ``skutag.vision.tail.graphs``) exported now, once, and kept in it (a
    bundle's ``vision_tail.joblib``), so that serving needs ONNX Runtime only."""
    views = tuple(views)
    unknown = [view for view in views if view not in VisionTail.SERVING_VIEWS]
    if unknown:  # before the export: VisionTail refuses them too
        raise ValueError(f"a tail serves deterministic views only ({', '.join(VisionTail.SERVING_VIEWS)}), "
                         f"not {unknown}")
    source = get_backbone(classifier.backbone).resolve(classifier.weights)
    size = source.preprocess.size
    graph = serving_graph(classifier.backbone, classifier.weights, Cut.parse(classifier.cut),
                          classifier._fitted_module(), size)
    return VisionTail(backbone=classifier.backbone, cut=classifier.cut, graph=graph, preprocess=source.preprocess,
                      source_id=(source.model_id, source.version), trained_digest=tail_digest(classifier, views),
                      views=views, threads=int(threads), joint=bool(joint))
