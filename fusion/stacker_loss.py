"""The stacker's training loss (``FusionTagger._fit_meta`` minimises it with L-BFGS).

The stacker scores a row as ``bias + sum_b Z[b] * (a[b] + d[b])`` over its blocks' out-of-fold scores ``Z``:
a shared weight ``a[b]`` per block plus a per-class correction ``d[b]``. :class:`StackerLoss` is the mean
softmax log-loss of those logits plus L2 penalties, with its gradient.
"""

from __future__ import annotations

import numpy as np

_CHUNK = 512  # rows per pass of the stacker's loss: 512 x classes float32 stays in cache


class StackerLoss:
    """The stacker's penalised softmax log-loss and its gradient in ``theta = (bias, a, d)``, for L-BFGS.

    Logits are ``bias + sum_b Z[b] * (a[b] + d[b])``. The work is float32 over rows x classes, done ``_CHUNK``
    rows at a time in buffers allocated once per thread, so that each chunk's logits, softmax and gradient
    terms stay in the CPU cache (over whole rows x classes matrices, every step streamed them through memory
    several times, and there are hundreds of steps).

    ``threads``: chunks are shared out over this many threads (numpy's array loops release the GIL). Each
    chunk's sums are kept apart and added in chunk order, so the value and gradient do not depend on the
    number of threads.
    """

    def __init__(self, Zr: np.ndarray, labels: np.ndarray, l2: float, shared_l2: float, bias_l2: float,
                 threads: int = 1):
        self.Zr, self.labels, self.l2, self.shared_l2, self.bias_l2 = Zr, labels, l2, shared_l2, bias_l2
        n_blocks, n_rows, n_classes = Zr.shape
        self.n_blocks, self.n_rows, self.n_classes = n_blocks, n_rows, n_classes
        chunk = min(_CHUNK, max(n_rows, 1))
        self.starts = list(range(0, n_rows, chunk))
        self.chunk = chunk
        self.threads = max(1, min(int(threads), len(self.starts)))
        self.buffers = [(np.empty((chunk, n_classes), dtype=np.float32), np.empty((chunk, n_classes), dtype=np.float32))
                        for _ in range(self.threads)]
        # per chunk: its negative log-likelihood, bias gradient and per-block gradient
        self.part_nll = np.zeros(len(self.starts), dtype=np.float64)
        self.part_g = np.zeros((len(self.starts), n_blocks + 1, n_classes), dtype=np.float64)
        self.pool = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(self.threads)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        n_blocks, n_classes, n_rows = self.n_blocks, self.n_classes, self.n_rows
        bias = theta[:n_classes]
        a = theta[n_classes:n_classes + n_blocks]
        d = theta[n_classes + n_blocks:].reshape(n_blocks, n_classes)
        W = (a[:, None] + d).astype(np.float32)
        bias32 = bias.astype(np.float32)
        if self.pool is None:
            self._chunks(0, W, bias32)
        else:
            list(self.pool.map(lambda worker: self._chunks(worker, W, bias32), range(self.threads)))
        gradients = self.part_g.sum(axis=0)
        g_bias, gW = gradients[0], gradients[1:]
        nll = float(self.part_nll.sum())
        grad = np.concatenate([g_bias + self.bias_l2 * bias, gW.sum(axis=1) + self.shared_l2 * a,
                               (gW + self.l2 * d).ravel()])
        penalty = 0.5 * (self.l2 * float(np.sum(d * d)) + self.shared_l2 * float(a @ a)
                         + self.bias_l2 * float(bias @ bias))
        return nll / max(n_rows, 1) + penalty, grad

    def _chunks(self, worker: int, W: np.ndarray, bias32: np.ndarray) -> None:
        """The chunks ``worker``, ``worker + threads``, ... : their sums into ``part_nll`` and ``part_g``."""
        Zr, n_rows, n_blocks = self.Zr, self.n_rows, self.n_blocks
        logits_buffer, scratch_buffer = self.buffers[worker]
        for part in range(worker, len(self.starts), self.threads):
            start = self.starts[part]
            stop = min(start + self.chunk, n_rows)
            logits, scratch = logits_buffer[: stop - start], scratch_buffer[: stop - start]
            picked = (np.arange(stop - start), self.labels[start:stop])
            np.multiply(Zr[0, start:stop], W[0], out=logits)
            for b in range(1, n_blocks):
                np.multiply(Zr[b, start:stop], W[b], out=scratch)
                logits += scratch
            logits += bias32
            top = logits.max(axis=1, keepdims=True)
            picked_logits = logits[picked]
            # the softmax and its log from one exp per entry, in place: logits become the gradient's G
            np.subtract(logits, top, out=logits)
            np.exp(logits, out=logits)
            total = logits.sum(axis=1, keepdims=True, dtype=np.float64)
            self.part_nll[part] = float(np.sum(top[:, 0] + np.log(total[:, 0]) - picked_logits, dtype=np.float64))
            logits *= (1.0 / (total * n_rows)).astype(np.float32)
            logits[picked] -= np.float32(1.0 / n_rows)
            gradient = self.part_g[part]
            gradient[0] = logits.sum(axis=0)
            for b in range(n_blocks):
                gradient[b + 1] = np.einsum("nk,nk->k", Zr[b, start:stop], logits)
