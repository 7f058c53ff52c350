"""Make any SentenceTransformer, or an encoder trained with SPACLTrainer, an MTEB model with honest metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_revision(model: SentenceTransformer) -> str:
    """A short hash of the model's parameters: two checkpoints never share an MTEB cache entry.

    Args:
        model: the encoder.

    Examples:
        >>> weights_revision(model)  # doctest: +SKIP
        '3f1c0a9b7d22'
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
    return digest.hexdigest()[:12]


def load_encoder(path: str | Path, pooling: str = "mean", max_seq_length: int | None = None) -> SentenceTransformer:
    """A SentenceTransformer from a saved sentence-transformers folder, or from a plain Hugging Face encoder folder
    (e.g. saved by SPACLTrainer) with ``pooling`` (``"mean"`` or ``"cls"``) on top.

    Args:
        path: the saved model's folder.
        pooling: pooling over the tokens of a plain encoder (ignored for a sentence-transformers folder).
        max_seq_length: truncation length; ``None`` keeps the model's.

    Raises:
        FileNotFoundError: when the folder does not exist.

    Examples:
        >>> model = load_encoder("outputs/train_sts/final", max_seq_length=128)  # doctest: +SKIP
        >>> model.encode(["a query"]).shape  # doctest: +SKIP
        (1, 384)
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"`model` {str(path)!r} is not a folder with a saved model.")
    if (path / "modules.json").is_file():
        model = SentenceTransformer(str(path), device="cpu")
    else:
        transformer = Transformer(str(path))
        model = SentenceTransformer(
            modules=[transformer, Pooling(transformer.get_embedding_dimension(), pooling)], device="cpu"
        )
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def mteb_model(model: SentenceTransformer, name: str | None = None) -> SentenceTransformerEncoderWrapper:
    """Wrap ``model`` for ``mteb.evaluate`` with a name and a revision derived from its weights.

    Args:
        model: the encoder.
        name: ``organization/model`` for the results; default ``local/<model card id or 'model'>``.

    Examples:
        >>> wrapper = mteb_model(model, "me/minilm-spacl")  # doctest: +SKIP
        >>> mteb.evaluate(wrapper, tasks, cache=None)  # doctest: +SKIP
    """
    wrapper = SentenceTransformerEncoderWrapper(model)
    base = name or f"local/{(getattr(model.model_card_data, 'model_id', None) or 'model').split('/')[-1]}"
    if "/" not in base:
        base = f"local/{base}"
    wrapper.mteb_model_meta = wrapper.mteb_model_meta.model_copy(
        update={"name": base, "revision": weights_revision(model)}
    )
    return wrapper
