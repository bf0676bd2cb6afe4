"""A measured alternative title model, not the product's: one hidden layer over the title features.

``SparseMLPClassifier`` takes the sparse TF-IDF rows ``TitleFeaturizer`` makes (the product's own features) into a
hidden layer of ``hidden`` ReLU units (an ``EmbeddingBag`` weighted by the TF-IDF values, so the first layer's
gradients stay sparse: ``SparseAdam``), then a softmax over the leaves; a linear learning-rate decay, dropout on the
hidden layer. ``bench_titles.py --mlp`` scores it alone and blended with the product's ``HierarchicalLinearSVC``
(docs/taxonomy-and-text.md, "Measured, not taken").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin


class SparseMLPClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, hidden: int = 256, epochs: int = 6, lr: float = 0.02, batch_size: int = 128,
                 dropout: float = 0.3, threads: int = 2, random_state: int = 0):
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.dropout = dropout
        self.threads = threads
        self.random_state = random_state

    @staticmethod
    def _bags(X: sp.csr_matrix):
        import torch

        X = sp.csr_matrix(X)
        return (torch.from_numpy(X.indices.astype(np.int64)), torch.from_numpy(X.indptr[:-1].astype(np.int64)),
                torch.from_numpy(X.data.astype(np.float32)))

    def _network(self, n_features: int, n_classes: int):
        import torch
        from torch import nn

        class Net(nn.Module):
            def __init__(net, hidden: int, dropout: float):
                super().__init__()
                net.first = nn.EmbeddingBag(n_features, hidden, mode="sum", sparse=True)
                nn.init.normal_(net.first.weight, std=0.05)
                net.bias = nn.Parameter(torch.zeros(hidden))
                net.drop = nn.Dropout(dropout)
                net.out = nn.Linear(hidden, n_classes)

            def forward(net, indices, offsets, weights):
                return net.out(net.drop(torch.relu(net.first(indices, offsets, per_sample_weights=weights) + net.bias)))

        return Net(int(self.hidden), float(self.dropout))

    def fit(self, X, y) -> "SparseMLPClassifier":
        import torch

        torch.set_num_threads(int(self.threads))
        torch.manual_seed(int(self.random_state))
        rng = np.random.default_rng(int(self.random_state))
        X = sp.csr_matrix(X)
        self.classes_, codes = np.unique(np.asarray(y, dtype=object), return_inverse=True)
        self.net_ = net = self._network(X.shape[1], len(self.classes_))
        rates = ((torch.optim.SparseAdam(list(net.first.parameters())), self.lr * 0.5),
                 (torch.optim.Adam([net.bias, *net.out.parameters()]), self.lr * 0.1))
        targets = torch.from_numpy(codes.astype(np.int64))
        n, size = X.shape[0], int(self.batch_size)
        total, step = self.epochs * -(-n // size), 0
        net.train()
        for _ in range(int(self.epochs)):
            order = rng.permutation(n)
            for start in range(0, n, size):
                rows = order[start:start + size]
                left = 1 - step / total
                step += 1
                for optimizer, rate in rates:
                    for group in optimizer.param_groups:
                        group["lr"] = rate * left
                    optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(net(*self._bags(X[rows])), targets[rows])
                loss.backward()
                for optimizer, _ in rates:
                    optimizer.step()
        net.eval()
        return self

    def decision_function(self, X) -> np.ndarray:
        """Log-probabilities of the leaves, rows x ``classes_``."""
        import torch

        with torch.inference_mode():
            return torch.log_softmax(self.net_(*self._bags(X)), dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.decision_function(X).argmax(axis=1)]
