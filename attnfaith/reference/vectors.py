"""Initial word vectors for the reference models' embedding (Jain & Wallace initialise it with pretrained fastText
vectors and fine-tune it).

* :func:`word_vectors`: from a word2vec / fastText text file, or from a HuggingFace model's input (word-piece)
  embedding (``"minilm"``, ``"hf:PATH"``), optionally rescaled to a mean norm;
* :func:`hf_word_vectors`: the latter, a local stand-in for pretrained word vectors (nothing is downloaded);
* :func:`text_word_vectors` (``"train"``): vectors learnt from the training texts themselves (SVD of their positive
  PMI co-occurrence matrix), the other stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from attnfaith.reference.config import minilm_path, resolve_data_path
from attnfaith.reference.vocabulary import Vocabulary

__all__ = ["word_vectors", "hf_word_vectors", "text_word_vectors"]


def _read_vector_file(path: Path, words: set[str]) -> dict[str, list[float]]:
    """The vectors of ``words`` from a word2vec / fastText text file (``.vec``: optional ``N D`` header, then
    ``word v1 ... vD`` per line)."""
    found: dict[str, list[float]] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for i, line in enumerate(f):
            parts = line.rstrip().split(" ")
            if i == 0 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # header
            if len(parts) < 3:
                continue
            if dim is None:
                dim = len(parts) - 1
            if len(parts) - 1 != dim or parts[0] not in words or parts[0] in found:
                continue
            found[parts[0]] = [float(x) for x in parts[1:]]
    if not found:
        raise ValueError(f"vectors: {path} has no vector for any word of the vocabulary")
    return found


def hf_word_vectors(vocab: Vocabulary, model_path: str, dim: int | None = 300) -> tuple[torch.Tensor, dict]:
    """Static word vectors from a HuggingFace model's *input* (word-piece) embedding, a local stand-in for pretrained
    word vectors: each word's vector is the mean of its word pieces' embeddings (``<sos>``/``<eos>``/``<unk>`` take
    ``[CLS]``/``[SEP]``/``[UNK]``, ``<pad>`` is 0); the matrix is centred and reduced to its top ``dim`` principal
    components when the model is wider (the variance kept is reported). Every word is covered (word pieces)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    emb = AutoModel.from_pretrained(model_path).get_input_embeddings().weight.detach().float()
    rows = []
    for i, w in enumerate(vocab.itos):
        if i == vocab.pad_token_id:
            rows.append(torch.zeros(emb.shape[1]))
            continue
        special = {vocab.sos_token_id: tok.cls_token_id, vocab.eos_token_id: tok.sep_token_id,
                   vocab.unk_token_id: tok.unk_token_id}.get(i)
        ids = [special] if special is not None else tok(w, add_special_tokens=False)["input_ids"]
        ids = [x for x in ids if x is not None] or [tok.unk_token_id]
        rows.append(emb[ids].mean(0))
    m = torch.stack(rows)
    info = {"source": model_path, "native_dim": int(m.shape[1]), "coverage": 1.0}
    if dim is not None and dim < m.shape[1]:
        mean = m[1:].mean(0, keepdim=True)
        x = m - mean
        _, s, v = torch.linalg.svd(x[1:], full_matrices=False)
        m = x @ v[:dim].T
        if m.shape[1] < dim:  # fewer words than dimensions (tiny vocabularies): pad with zero components
            m = torch.cat([m, m.new_zeros(m.shape[0], dim - m.shape[1])], dim=1)
        m[vocab.pad_token_id] = 0
        info["pca_variance_kept"] = float((s[:dim] ** 2).sum() / (s ** 2).sum())
    info["dim"] = int(m.shape[1])
    info["mean_norm"] = float(m[1:].norm(dim=1).mean())
    return m, info


def text_word_vectors(vocab: Vocabulary, texts: Sequence[str], dim: int = 300, window: int = 5,
                      alpha: float = 0.75) -> tuple[torch.Tensor, dict]:
    """Word vectors learnt from ``texts`` (the training split): the truncated SVD of the positive PMI matrix of
    word co-occurrences (Levy, Goldberg & Dagan 2015, "Improving distributional similarity with lessons learned
    from word embeddings": symmetric window of ``window`` words, every pair counted once, context counts raised to
    ``alpha`` = 0.75, vectors ``U·√Σ``), rescaled to a mean word-vector norm of 1 (as ``"minilm"``).

    Each text is read as ``<sos> words <eos>`` (words out of the vocabulary as ``<unk>``), so the specials get
    vectors too; ``<pad>`` is 0. A word that co-occurs with nothing (a one-word vocabulary) gets 0. Deterministic:
    the SVD is exact (LAPACK) up to 4,000 rows and ARPACK with a fixed start vector above.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import svds

    n = len(vocab)
    rows, cols = [], []
    for t in texts:
        ids = np.asarray(vocab.encode_ids(t), dtype=np.int64)
        for d in range(1, window + 1):
            if len(ids) > d:
                rows += [ids[:-d], ids[d:]]
                cols += [ids[d:], ids[:-d]]
    if not rows:
        raise ValueError("texts: no pair of words to learn vectors from")
    r, c = np.concatenate(rows), np.concatenate(cols)
    counts = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)).tocsr()
    counts.sum_duplicates()
    total = counts.sum()
    w = np.asarray(counts.sum(axis=1)).ravel()
    ctx = np.asarray(counts.sum(axis=0)).ravel() ** alpha
    ctx = ctx / ctx.sum()
    coo = counts.tocoo()
    pmi = np.log(coo.data * 1.0 / total) - np.log(w[coo.row] / total) - np.log(np.maximum(ctx[coo.col], 1e-30))
    keep = pmi > 0
    ppmi = coo_matrix((pmi[keep], (coo.row[keep], coo.col[keep])), shape=(n, n)).tocsr()
    k = min(dim, n - 1)
    if n <= 4000:
        u, sv, _ = np.linalg.svd(ppmi.toarray(), full_matrices=False)
        u, sv = u[:, :k], sv[:k]
    else:
        u, sv, _ = svds(ppmi, k=k, v0=np.full(n, 1.0 / np.sqrt(n)))
        order = np.argsort(-sv)
        u, sv = u[:, order], sv[order]
    m = torch.zeros(n, dim)
    m[:, :k] = torch.as_tensor(u * np.sqrt(sv), dtype=torch.float32)
    m[vocab.pad_token_id] = 0
    norms = m[len(Vocabulary.SPECIALS):].norm(dim=1)
    mean_norm = float(norms[norms > 0].mean()) if bool((norms > 0).any()) else 1.0
    m = m / mean_norm
    info = {"source": "train: PPMI-SVD of the training texts", "window": window, "dim": dim,
            "texts": len(texts), "pairs": int(total), "coverage": float((norms > 0).float().mean()) if len(norms)
            else 1.0, "mean_norm": 1.0}
    return m, info


def word_vectors(spec: str, vocab: Vocabulary, dim: int, data_root: str | None = None,
                 norm: float | None = None, texts: Sequence[str] | None = None) -> tuple[torch.Tensor, dict]:
    """Initial embeddings for ``vocab`` from ``spec``: ``"minilm"`` (all-MiniLM-L6-v2's input embedding, see
    :func:`hf_word_vectors`), ``"hf:PATH"`` (any local HuggingFace model's), ``"train"`` (learnt from ``texts``,
    the training split: :func:`text_word_vectors`), or a word2vec / fastText text file (words without a vector get
    N(0, 1), as Jain & Wallace's code; ``<pad>`` 0). ``norm``: rescale the whole matrix so that the mean L2 norm of
    the word vectors (specials excluded) is ``norm`` (directions unchanged)."""
    if spec == "train":
        if texts is None:
            raise ValueError("vectors 'train' needs texts= (the training texts)")
        matrix, info = text_word_vectors(vocab, texts, dim)
    elif spec == "minilm" or spec.startswith("hf:"):
        path = minilm_path() if spec == "minilm" else spec[3:]
        matrix, info = hf_word_vectors(vocab, path, dim)
    else:
        path = resolve_data_path(spec, data_root)
        if not path.is_file():
            raise FileNotFoundError(f"vectors: no such file: {path}")
        found = _read_vector_file(path, set(vocab.itos))
        matrix = vocab.embedding_matrix(found, seed=0)
        info = {"source": str(path), "dim": int(matrix.shape[1]), "coverage": vocab.last_embedding_coverage}
    if norm is not None:
        if norm <= 0:
            raise ValueError(f"vectors_norm must be > 0, got {norm}")
        words = matrix[len(Vocabulary.SPECIALS):]
        current = float(words.norm(dim=1).mean()) if words.numel() else 1.0
        matrix = matrix * (norm / current)
        info["rescaled_mean_norm"] = float(norm)
    return matrix, info
