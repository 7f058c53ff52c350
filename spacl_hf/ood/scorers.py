"""Out-of-distribution scorers on frozen embeddings: fit on the known intents' training embeddings, then score
queries (higher = more likely OOD) and predict their known intent.

Shape (all scorers):
    - ``fit(embeddings [N, D], labels [N])``: labels in ``0 .. K-1``
    - ``score(embeddings [M, D]) -> [M]``: higher = more out-of-distribution
    - ``predict(embeddings [M, D]) -> [M]``: the most likely known intent
"""

from __future__ import annotations

import copy
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from spacl_hf.core.checks import check_int, check_tensor


class OODScorer:
    """Base class: checks inputs and keeps the fitted state; subclasses implement ``_fit`` and ``_score_predict``.

    Args:
        normalize: L2-normalise embeddings before fitting and scoring.

    Shape:
        - ``fit(embeddings [N, D], labels [N])``; ``score`` / ``predict(embeddings [M, D]) -> [M]``

    Raises:
        ValueError: in ``fit`` / ``score`` on bad shapes, non-finite values, negative labels or empty classes.
        RuntimeError: when scoring before ``fit``.

    Examples:
        >>> class NormScorer(OODScorer):  # distance from the origin of the raw embeddings
        ...     def _fit(self, x, labels):
        ...         pass
        ...     def _score_predict(self, x):
        ...         return x.norm(dim=1), torch.zeros(len(x), dtype=torch.long)
        >>> NormScorer(normalize=False).fit(torch.randn(4, 2), torch.tensor([0, 0, 0, 0])).score(torch.ones(1, 2))
        tensor([1.4142], dtype=torch.float64)
    """

    name = "base"

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize
        self.dim: int | None = None

    def _prepare(self, name: str, embeddings: Tensor) -> Tensor:
        check_tensor(name, embeddings, ndim=2, floating=True, finite=True)
        if self.dim is not None and embeddings.shape[1] != self.dim:
            raise ValueError(f"`{name}` has dimension {embeddings.shape[1]}, the scorer was fitted on {self.dim}.")
        embeddings = embeddings.double()
        return F.normalize(embeddings, dim=-1) if self.normalize else embeddings

    def fit(self, embeddings: Tensor, labels: Tensor) -> OODScorer:
        """Fit on in-distribution training embeddings and their labels ``0 .. K-1``.

        Raises:
            ValueError: on a shape mismatch, non-finite values, or labels that are negative or leave a class empty.
        """
        check_tensor("labels", labels, ndim=1)
        if labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"`labels` has {labels.shape[0]} rows, `embeddings` {embeddings.shape[0]}.")
        if labels.dtype.is_floating_point or labels.min() < 0:
            raise ValueError("`labels` must be integer class ids 0 .. K-1 (no OOD label in the training data).")
        counts = torch.bincount(labels.long())
        if (counts == 0).any():
            raise ValueError(f"`labels` leaves classes {torch.nonzero(counts == 0).flatten().tolist()} empty.")
        self.dim = None
        x = self._prepare("embeddings", embeddings)
        self.dim = x.shape[1]
        self.num_classes = counts.numel()
        self._fit(x, labels.long())
        return self

    def _fitted(self) -> None:
        if self.dim is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call `fit(train_embeddings, train_labels)`.")

    def score_and_predict(self, embeddings: Tensor) -> tuple[Tensor, Tensor]:
        """OOD scores ``[M]`` (float64, higher = more OOD) and predicted known intents ``[M]``."""
        self._fitted()
        return self._score_predict(self._prepare("embeddings", embeddings))

    def score(self, embeddings: Tensor) -> Tensor:
        return self.score_and_predict(embeddings)[0]

    def predict(self, embeddings: Tensor) -> Tensor:
        return self.score_and_predict(embeddings)[1]

    def _fit(self, x: Tensor, labels: Tensor) -> None:
        raise NotImplementedError

    def _score_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalize={self.normalize})"


def _class_means(x: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    sums = torch.zeros(num_classes, x.shape[1], dtype=x.dtype).index_add_(0, labels, x)
    return sums / torch.bincount(labels, minlength=num_classes)[:, None].to(x.dtype)


class CentroidCosineScorer(OODScorer):
    """Score = minus the largest cosine similarity to a class centroid; prediction = that class.

    Examples:
        >>> scorer = CentroidCosineScorer().fit(torch.eye(2), torch.tensor([0, 1]))
        >>> scorer.predict(torch.tensor([[0.9, 0.1]]))
        tensor([0])
    """

    name = "centroid_cosine"

    def __init__(self) -> None:
        super().__init__(normalize=True)

    def _fit(self, x: Tensor, labels: Tensor) -> None:
        self.centroids = F.normalize(_class_means(x, labels, self.num_classes), dim=-1)

    def _score_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        best, predicted = (x @ self.centroids.T).max(dim=1)
        return -best, predicted


class KNNScorer(OODScorer):
    """Score = minus the cosine similarity to the ``k``-th nearest training embedding (Sun et al., 2022);
    prediction = majority vote of those ``k`` neighbours (ties to the nearest).

    Args:
        k: neighbour rank.
        batch_size: queries per similarity block.

    Raises:
        ValueError: on ``k`` < 1.

    Examples:
        >>> scorer = KNNScorer(k=1).fit(torch.eye(2), torch.tensor([0, 1]))
        >>> scorer.score_and_predict(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        (tensor([-1.0000, -0.7071], dtype=torch.float64), tensor([0, 0]))
    """

    name = "knn"

    def __init__(self, k: int = 10, batch_size: int = 1024) -> None:
        super().__init__(normalize=True)
        self.k = check_int("k", k, 1)
        self.batch_size = check_int("batch_size", batch_size, 1)

    def _fit(self, x: Tensor, labels: Tensor) -> None:
        smallest = int(torch.bincount(labels).min())
        if self.k > smallest:
            # the k-th neighbour of a known query then lies in another class: the score stops separating OOD
            warnings.warn(
                f"KNNScorer(k={self.k}) is fitted on a class with only {smallest} examples; use k <= {smallest} "
                "or fit on more examples per class.",
                stacklevel=3,
            )
        self.bank, self.labels = x, labels

    def _score_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k = min(self.k, self.bank.shape[0])
        scores, predictions = [], []
        for start in range(0, x.shape[0], self.batch_size):
            similarity, index = (x[start : start + self.batch_size] @ self.bank.T).topk(k, dim=1)
            scores.append(-similarity[:, -1])
            votes = torch.zeros(index.shape[0], self.num_classes, dtype=x.dtype)
            # one vote each, plus a tiny rank bonus so that ties go to the nearer neighbour
            votes.scatter_add_(
                1, self.labels[index], 1 + 1e-6 * torch.linspace(1, 0, k, dtype=x.dtype).expand_as(index)
            )
            predictions.append(votes.argmax(dim=1))
        return torch.cat(scores), torch.cat(predictions)

    def __repr__(self) -> str:
        return f"KNNScorer(k={self.k})"


class MahalanobisScorer(OODScorer):
    """Score = the smallest Mahalanobis distance to a class mean under a covariance shared by all classes
    (Lee et al., 2018), shrunk towards the identity by ``shrinkage`` for stability; prediction = that class.

    Args:
        shrinkage: weight of ``trace(S) / D * I`` in the covariance (0: the plain pooled covariance).
        normalize: L2-normalise the embeddings first (usual for sentence embeddings).

    Raises:
        ValueError: on ``shrinkage`` outside [0, 1].

    Examples:
        >>> x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [2.0, 2.0], [2.2, 2.0]])
        >>> scorer = MahalanobisScorer(normalize=False).fit(x, torch.tensor([0, 0, 1, 1]))
        >>> scorer.predict(torch.tensor([[2.1, 2.1]])), bool(scorer.score(torch.tensor([[9.0, -9.0]])) > 10)
        (tensor([1]), True)
    """

    name = "mahalanobis"

    def __init__(self, shrinkage: float = 0.1, normalize: bool = True) -> None:
        super().__init__(normalize=normalize)
        if not 0 <= shrinkage <= 1:
            raise ValueError(f"`shrinkage` must be in [0, 1], got {shrinkage!r}.")
        self.shrinkage = float(shrinkage)

    def _fit(self, x: Tensor, labels: Tensor) -> None:
        if int(torch.bincount(labels).max()) < 2:
            # every example is its own class mean: the pooled covariance is zero and every score is equal
            warnings.warn(
                "MahalanobisScorer is fitted on one example per class: the within-class covariance is zero, so its "
                "scores cannot separate OOD queries (AUROC 50). Fit on at least 2 examples per class.",
                stacklevel=3,
            )
        self.means = _class_means(x, labels, self.num_classes)
        centred = x - self.means[labels]
        covariance = centred.T @ centred / x.shape[0]
        identity = torch.eye(x.shape[1], dtype=x.dtype) * covariance.trace() / x.shape[1]
        covariance = (1 - self.shrinkage) * covariance + self.shrinkage * identity
        self.precision = torch.linalg.pinv(covariance, hermitian=True)

    def _score_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # d(x, m)^2 = x'Px - 2 x'Pm + m'Pm, for all class means at once
        projected = x @ self.precision
        squared = (projected * x).sum(1, keepdim=True) - 2 * projected @ self.means.T
        squared = squared + ((self.means @ self.precision) * self.means).sum(1)[None, :]
        best, predicted = squared.clamp(min=0).min(dim=1)
        return best, predicted

    def __repr__(self) -> str:
        return f"MahalanobisScorer(shrinkage={self.shrinkage}, normalize={self.normalize})"


class MaxSoftmaxScorer(OODScorer):
    """Maximum softmax probability (Hendrycks & Gimpel, 2017) of a classifier trained with the encoder: score =
    minus the largest class probability; prediction = its class. The baseline of a cross-entropy model.

    Args:
        classifier: maps raw (not normalised) embeddings ``[M, D]`` to logits ``[M, K]``, e.g. the ``nn.Linear``
            head trained with the encoder; it runs in float64 on a copy of its weights, without gradients.

    Raises:
        ValueError: in ``fit`` when the classifier's logits do not have one column per training class.

    Examples:
        >>> head = torch.nn.Linear(2, 2, bias=False)
        >>> _ = head.weight.data.copy_(torch.eye(2))
        >>> MaxSoftmaxScorer(head).fit(torch.eye(2), torch.tensor([0, 1])).predict(torch.tensor([[0.1, 3.0]]))
        tensor([1])
    """

    name = "max_softmax"

    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__(normalize=False)
        if not callable(classifier):
            raise ValueError(f"`classifier` must map embeddings to logits, got {type(classifier).__name__}.")
        self.classifier = copy.deepcopy(classifier).double().eval() if isinstance(classifier, torch.nn.Module) else classifier

    def _logits(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.classifier(x)

    def _fit(self, x: Tensor, labels: Tensor) -> None:
        columns = self._logits(x[:1]).shape[-1]
        if columns != self.num_classes:
            raise ValueError(f"`classifier` gives {columns} logits, the training labels hold {self.num_classes} classes.")

    def _score_predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        best, predicted = self._logits(x).softmax(dim=-1).max(dim=1)
        return -best, predicted


def default_scorers() -> list[OODScorer]:
    """The three scorers of the benchmark, with their default settings.

    Examples:
        >>> [scorer.name for scorer in default_scorers()]
        ['centroid_cosine', 'knn', 'mahalanobis']
    """
    return [CentroidCosineScorer(), KNNScorer(k=10), MahalanobisScorer(shrinkage=0.1)]


def choose_threshold(
    scores: Tensor,
    is_ood: Tensor,
    predictions: Tensor | None = None,
    labels: Tensor | None = None,
    strategy: str = "auto",
    target_tpr: float = 0.95,
    num_candidates: int = 400,
) -> float:
    """An OOD-score threshold chosen on validation data (a query is OOD when its score is above it).

    Args:
        scores: validation OOD scores ``[N]``.
        is_ood: ``[N]`` bool, True for OOD validation queries.
        predictions: validation predicted / true known intents ``[N]`` (labels of OOD rows are ignored);
        labels: see ``predictions``.
            needed for ``"macro_f1"``.
        strategy: ``"macro_f1"`` (maximise macro F1 over the known intents + OOD; needs OOD validation queries),
            ``"tpr"`` (keep ``target_tpr`` of the in-distribution queries; needs none) or ``"auto"`` (the first
            when the validation data holds OOD queries and predictions are given, else the second).
        target_tpr: in-distribution acceptance rate of the ``"tpr"`` strategy.
        num_candidates: thresholds tried by ``"macro_f1"`` (quantiles of the scores).

    Raises:
        ValueError: on an unknown strategy, or ``"macro_f1"`` without OOD queries or predictions.

    Shape:
        - scores, is_ood, predictions, labels: ``[N]``

    Examples:
        >>> scores = torch.tensor([0.1, 0.2, 0.3, 0.9])
        >>> is_ood = torch.tensor([False, False, False, True])
        >>> round(choose_threshold(scores, is_ood, strategy="tpr", target_tpr=1.0), 4)  # keeps every known query
        0.3
    """
    if strategy not in ("auto", "macro_f1", "tpr"):
        raise ValueError(f"`strategy` must be 'auto', 'macro_f1' or 'tpr', got {strategy!r}.")
    if not 0 < target_tpr <= 1:
        raise ValueError(f"`target_tpr` must be in (0, 1], got {target_tpr!r}.")
    scores, is_ood = scores.double(), is_ood.bool()
    if is_ood.shape != scores.shape:
        raise ValueError(f"`is_ood` must have the shape of `scores` {tuple(scores.shape)}, got {tuple(is_ood.shape)}.")
    if strategy == "auto":
        strategy = "macro_f1" if bool(is_ood.any()) and predictions is not None and labels is not None else "tpr"
    if strategy == "tpr":
        inside = scores[~is_ood].sort().values
        if inside.numel() == 0:
            raise ValueError("the `tpr` strategy needs in-distribution validation queries.")
        return float(inside[max(0, int(torch.tensor(target_tpr * inside.numel()).ceil()) - 1)])
    if predictions is None or labels is None or not bool(is_ood.any()):
        raise ValueError("the `macro_f1` strategy needs OOD validation queries, `predictions` and `labels`.")
    candidates = torch.quantile(scores, torch.linspace(0, 1, num_candidates, dtype=scores.dtype)).unique()
    ood_id = int(max(predictions.max(), labels[~is_ood].max() if (~is_ood).any() else 0)) + 1
    truth = torch.where(is_ood, torch.full_like(labels, ood_id), labels).long()
    best, best_f1 = float(candidates[-1]), -1.0
    for threshold in candidates.tolist():
        predicted = torch.where(scores > threshold, torch.full_like(truth, ood_id), predictions.long())
        f1 = _macro_f1(predicted, truth, ood_id + 1)
        if f1 > best_f1:
            best, best_f1 = threshold, f1
    return best


def _macro_f1(predicted: Tensor, truth: Tensor, num_classes: int) -> float:
    present = torch.bincount(truth, minlength=num_classes) > 0
    true_positive = torch.bincount(truth[predicted == truth], minlength=num_classes).double()
    denominator = torch.bincount(predicted, minlength=num_classes).double() + torch.bincount(
        truth, minlength=num_classes
    )
    f1 = torch.where(denominator > 0, 2 * true_positive / denominator.clamp(min=1), torch.zeros_like(denominator))
    return float(f1[present].mean())
