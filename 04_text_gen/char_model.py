"""04_text_gen's mechanism: text -> character ids -> contiguous streams -> a character RNN trained with
truncated BPTT -> sampled text.

Read top to bottom: the vocabulary and the TBPTT batches, the n-gram baseline to beat, the sampling filters
(THEORY.md §11), the model with its `generate`, the training step `train_step` (§10 truncated BPTT: the
carried, detached state; §9 clipping) and the report loop around it, save/load (and `saved_checkpoint`, which
finds a training script's model.pt), and the report. text_lstm.py / text_gru.py tell the story with these
pieces; creative_writing.py samples from the trained models. Raw text (Shakespeare's plays, or a --TEXT file)
comes from utils.data_utils.load_text_corpus.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.data_utils import data_dir, load_text_corpus
from utils.model_utils import count_parameters, init_forget_bias, make_rnn
from utils.script_utils import UserError, atomic_write, output_dir, print_table, save_metrics
from utils.training import (
    NonFiniteLoss,
    ProgressLog,
    check_checkpoint,
    checkpoint_tag,
    clip_gradients,
    epoch_line,
    gradient_summary,
    load_checkpoint,
    save_checkpoint,
    stop_if_not_finite,
    stopped_early,
    weights_that_fit,
)
from utils.visualization import plot_training_curves


# ----------------------------------------------------------------------------------------------------
# Data: characters <-> ids, and the contiguous batches of truncated BPTT
# ----------------------------------------------------------------------------------------------------
class CharVocab:
    """Characters <-> ids: the sorted set of training characters; index 0 is the unknown character.

    Stored in a checkpoint as one plain string (`chars`), so `torch.load(weights_only=True)` reads it.
    A character never seen in training (a prompt's emoji, a validation-only letter) maps to 0.
    """

    UNK = "\ufffd"  # the Unicode replacement character stands for any unseen character

    def __init__(self, chars: str):
        self.itos = [self.UNK] + [c for c in chars if c != self.UNK]
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def build(cls, text: str) -> "CharVocab":
        return cls("".join(sorted(set(text))))

    @property
    def chars(self) -> str:
        return "".join(self.itos[1:])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, ch: str) -> bool:
        return ch in self.stoi and ch != self.UNK

    def encode(self, text: str) -> torch.Tensor:
        """str of length N -> (N,) long tensor."""
        return torch.tensor([self.stoi.get(c, 0) for c in text], dtype=torch.long)

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` this vocabulary has never seen, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self))


class CharStreams:
    """Contiguous batches for truncated backpropagation through time (TBPTT, THEORY.md §10).

    The encoded text (N,) is cut into `batch_size` equal streams, (B, n) with n = (N - offset - 1) // B
    (offset 0 for validation, random below seq_len for each training pass): row b is one long
    contiguous stretch of the text. Iterating yields chunks (x, y, reset) with x, y: (B, seq_len) and
    y = x shifted by one character, so chunk k+1 of row b continues exactly where chunk k ended: the
    hidden state at the end of one chunk is the right starting state for the next (carried, detached).
    `reset` is True on the first chunk of a pass, where the state must be zeroed.

    - chunks_per_epoch=None: one iteration is one full pass from the start (validation).
    - chunks_per_epoch=k: each iteration yields the next k chunks, wrapping around at the end of the
      text, so a big corpus can be reported on every few minutes; every wrap starts a new pass at a
      random offset < seq_len (the chunk boundaries move, so no character is always first in a chunk).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int, *,
                 chunks_per_epoch: int | None = None, device: torch.device | str = "cpu", seed: int = 0):
        if len(ids) < batch_size * (seq_len + 1) + seq_len:
            raise UserError(f"the text ({len(ids)} characters) is too short for --BATCH_SIZE={batch_size} "
                            f"streams of --SEQ_LEN={seq_len}; lower them or use a longer text.")
        self.ids, self.B, self.T = ids, batch_size, seq_len
        self.chunks_per_epoch, self.device = chunks_per_epoch, device
        self.g = torch.Generator().manual_seed(seed)  # its own generator: the global RNG is left alone
        self._new_pass()

    def _new_pass(self) -> None:
        random_offset = self.chunks_per_epoch is not None
        offset = int(torch.randint(self.T, (1,), generator=self.g)) if random_offset else 0
        n = (len(self.ids) - offset - 1) // self.B
        data = self.ids[offset: offset + self.B * n + 1]
        self.x = data[:-1].view(self.B, n).to(self.device)  # (T1) (B, n): row b = x[o+b*n : o+(b+1)*n]
        self.y = data[1:].reshape(self.B, n).to(self.device)  # (B, n): the next character
        self.pos, self.n = 0, n

    def __len__(self) -> int:
        return self.chunks_per_epoch or self.n // self.T

    def scored_positions(self) -> torch.Tensor:
        """Indices into `ids` of the characters one full pass from the start predicts (the targets y of
        every chunk): (B * (n // T) * T,). The rest (each row's last n mod T columns, and the text's last
        N - 1 - B*n characters) is never scored; the n-gram baseline scores these same positions."""
        cols = torch.arange((self.n // self.T) * self.T)
        return (torch.arange(self.B)[:, None] * self.n + cols[None, :] + 1).reshape(-1)

    def __iter__(self):
        if self.chunks_per_epoch is None:  # validation: always the same full pass, from the start
            self.pos = 0
        for _ in range(len(self)):
            if self.pos + self.T > self.n:
                self._new_pass()
            reset = self.pos == 0
            s = slice(self.pos, self.pos + self.T)
            self.pos += self.T
            yield self.x[:, s], self.y[:, s], reset   # (T1) chunk k, columns kT..kT+T-1: (B, T), (B, T)


def char_ngram_baseline(train: str, val: str, n: int = 5, k: float = 0.1, positions=None) -> dict:
    """An add-k smoothed character n-gram model: the yardstick an RNN must beat.

    P(c | the previous n-1 chars) = (count(context + c) + k) / (count(context) + k * V), V = the
    training characters + 1 unknown. It sees exactly n-1 characters back; whatever the RNN gains over
    it comes from longer memory. Returns {'nats_per_char', 'bits_per_char', 'perplexity', 'chars_scored'}
    on `val`: on every character, or only on `positions` (indices into val; CharStreams.scored_positions
    gives the ones the RNN's evaluation scores, so both numbers cover the same characters).
    """
    vocab = set(train)
    V = len(vocab) + 1
    grams, contexts = Counter(), Counter()
    pad = "\n" * (n - 1)
    t = pad + train
    for i in range(n - 1, len(t)):
        grams[t[i - n + 1: i + 1]] += 1
        contexts[t[i - n + 1: i]] += 1
    v = pad + val
    scored = range(len(val)) if positions is None else [int(p) for p in positions]
    total = 0.0
    for p in scored:                               # val[p] is v[p + n - 1], its context the n-1 before it
        i = p + n - 1
        ctx, gram = v[i - n + 1: i], v[i - n + 1: i + 1]
        total -= math.log((grams.get(gram, 0) + k) / (contexts.get(ctx, 0) + k * V))
    nats = total / max(len(scored), 1)
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2), "perplexity": math.exp(nats),
            "chars_scored": len(scored)}


def cached_ngram_baseline(corpus: dict, n: int = 5, k: float = 0.1, positions=None) -> dict:
    """`char_ngram_baseline` on corpus['train'] -> corpus['val'] (at `positions`), cached in
    04_text_gen/data/ by the texts' and positions' checksum (counting 4 M characters of 5-grams takes tens
    of seconds)."""
    where = ("all" if positions is None
             else hashlib.sha256(torch.as_tensor(positions).numpy().tobytes()).hexdigest())
    digest = hashlib.sha256(f"{n}|{k}|{len(corpus['train'])}|{where}|".encode() + corpus["train"].encode()
                            + b"\x00" + corpus["val"].encode()).hexdigest()[:16]
    path = data_dir("04_text_gen") / f"ngram_baseline_{digest}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if all(isinstance(saved.get(k), (int, float)) and math.isfinite(saved[k]) and saved[k] > 0
                   for k in ("nats_per_char", "bits_per_char", "perplexity", "add_k", "chars_scored")) \
                    and saved.get("order") == n:
                return saved
        except (ValueError, AttributeError):
            pass
        print(f"{path.name} is damaged: counting the n-gram baseline again.")
    result = char_ngram_baseline(corpus["train"], corpus["val"], n, k, positions)
    result.update(order=n, add_k=k)
    atomic_write(path, lambda f: f.write_text(json.dumps(result), encoding="utf-8"))
    return result


def streams_that_fit(ids: torch.Tensor, batch_size: int, seq_len: int, device: torch.device | str, *,
                     chunks_per_epoch: int | None = None, seed: int = 0) -> CharStreams:
    """CharStreams with at most `batch_size` streams, fewer for a short text so that each stream is at least
    4 chunks long (a validation text, 02's reviews' text)."""
    return CharStreams(ids, max(1, min(batch_size, len(ids) // (4 * seq_len))), seq_len,
                       chunks_per_epoch=chunks_per_epoch, device=device, seed=seed)


def prepare_char_data(text_path: str, batch_size: int, seq_len: int, chunks_per_epoch: int,
                      device: torch.device | str, *, max_train_chars: int = 0, val_chars_per_epoch: int = 0,
                      val_batch_size: int = 64, ngram_order: int = 5, ngram_k: float = 0.1,
                      seed: int = 0, dataset: str = "shakespeare") -> dict:
    """Everything a character model trains on: {'corpus': the split texts, 'vocab': a CharVocab of the
    training characters, 'streams': {'train', 'val' (per report, maybe a prefix), 'val_full'} CharStreams,
    'baseline': the n-gram's scores}. `max_train_chars` / `val_chars_per_epoch` > 0 cut the texts (for
    --quick and for speed). dataset: 'shakespeare' or 'peoples_daily' (a text_path replaces it)."""
    corpus = dict(load_text_corpus(text_path, dataset=dataset), dataset="text" if text_path else dataset)
    if max_train_chars > 0:
        corpus = dict(corpus, train=corpus["train"][:max_train_chars],
                      val=corpus["val"][:max(max_train_chars // 10, 20_000)])
    vocab = CharVocab.build(corpus["train"])
    train_ids, val_ids = vocab.encode(corpus["train"]), vocab.encode(corpus["val"])  # (N_train,), (N_val,)
    val_epoch = val_ids[:val_chars_per_epoch] if 0 < val_chars_per_epoch < len(val_ids) else val_ids

    def eval_streams(ids):  # many streams for speed, but each at least 4 chunks long
        return streams_that_fit(ids, val_batch_size, seq_len, device)

    streams = {"train": CharStreams(train_ids, batch_size, seq_len, chunks_per_epoch=chunks_per_epoch,
                                    device=device, seed=seed),
               "val": eval_streams(val_epoch), "val_full": eval_streams(val_ids)}
    unseen = vocab.unknown(corpus["val"])
    print(f"data: {corpus['source']}: {len(corpus['train']):,} training / {len(corpus['val']):,} validation "
          f"characters, {len(vocab) - 1} distinct"
          + (f"; validation plays: {', '.join(corpus['val_plays'])}" if corpus["val_plays"] else "")
          + (f"; {len(unseen)} validation-only characters map to unknown" if unseen else ""))
    # the baseline scores exactly the characters the model's final evaluation scores (val_full)
    baseline = cached_ngram_baseline(corpus, ngram_order, ngram_k, streams["val_full"].scored_positions())
    baseline["val_chars"] = len(corpus["val"])
    print(f"baseline: add-{ngram_k:g} character {ngram_order}-gram  "
          f"{baseline['nats_per_char']:.3f} nats/char  {baseline['bits_per_char']:.3f} bits/char  "
          f"perplexity {baseline['perplexity']:.2f}  (scored on the {baseline['chars_scored']:,} of "
          f"{len(corpus['val']):,} validation characters the model's final evaluation scores: "
          f"{streams['val_full'].B} streams of whole {seq_len}-character chunks)")
    return {"corpus": corpus, "vocab": vocab, "streams": streams, "baseline": baseline}


# ----------------------------------------------------------------------------------------------------
# Sampling (THEORY.md §11): three ways to reshape the next-character distribution before drawing from it
# ----------------------------------------------------------------------------------------------------
def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T): T < 1 sharpens (safer, more repetitive), T > 1 flattens (bolder, more
    errors), T -> 0 is greedy. logits: (..., V) -> probabilities (..., V)."""
    if temperature <= 0:
        probs = torch.zeros_like(logits)
        return probs.scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
    return torch.softmax(logits / temperature, dim=-1)             # (S1) temperature


def top_k_filter(probs: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k most likely characters, renormalised; k <= 0 keeps all.  probs: (..., V)."""
    if k <= 0 or k >= probs.shape[-1]:
        return probs
    kth = probs.topk(k, dim=-1).values[..., -1:]                    # (..., 1): the k-th largest
    kept = torch.where(probs >= kth, probs, torch.zeros_like(probs))   # (S2) top-k (ties with the k-th kept)
    return kept / kept.sum(-1, keepdim=True)


def top_p_filter(probs: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): the smallest set of most likely characters whose total
    probability reaches p, renormalised; p >= 1 keeps all.  probs: (..., V)."""
    if p >= 1.0:
        return probs
    sorted_p, order = probs.sort(dim=-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p          # mass of the strictly more likely characters
    keep_sorted = before < p                         # (S3) the nucleus N_p (the first character always)
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True)


def sampling_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0,
                          top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p: the distribution the next character is drawn from."""
    return top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)


# Trained with TBPTT, the model almost never starts from a zero state (it is carried across chunks and
# reset only once per pass), so from a cold start its first predictions are nearly uniform and one bad
# draw derails the rest. Reading a blank line first (what precedes every speech) warms it up.
GENERATION_WARMUP = "\n\n"


@contextlib.contextmanager
def one_step_friendly(device: torch.device):
    """On CPU, torch runs nn.LSTM (not nn.GRU) through oneDNN, whose fixed cost per call dominates when a
    call is a single character: one step of a 2x384 LSTM measured 9.7 ms with it and 0.5 ms without (the
    GRU: 0.6 ms). On 64x128 training chunks oneDNN is the faster path (0.65 vs 0.86 s per step), so it is
    switched off only around step-by-step generation, and restored after."""
    before = torch.backends.mkldnn.enabled
    if device.type == "cpu":
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


# ----------------------------------------------------------------------------------------------------
# The model: embedding -> LSTM/GRU stack -> linear over the characters
# ----------------------------------------------------------------------------------------------------
class CharRNN(nn.Module):
    """Embedding -> multi-layer LSTM/GRU -> linear: the logits of the next character at every step.

    `hparams` holds every constructor argument, so a checkpoint can rebuild the model.
    """

    def __init__(self, vocab_size: int, *, cell: str, impl: str = "torch", embed_dim: int = 64,
                 hidden_size: int = 256, num_layers: int = 2, dropout: float = 0.1,
                 forget_bias: float | None = None, tie_weights: bool = False,
                 device: torch.device | str = "cpu"):
        super().__init__()
        self.hparams = dict(vocab_size=vocab_size, cell=cell, impl=impl, embed_dim=embed_dim,
                            hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                            forget_bias=forget_bias, tie_weights=tie_weights)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = make_rnn(cell, impl, embed_dim, hidden_size, num_layers, dropout=dropout, device=device)
        if cell.lower() == "lstm" and forget_bias is not None:  # None: torch's init, f starts near 0.5 (§4.4)
            init_forget_bias(self.rnn, forget_bias)
        self.dropout = nn.Dropout(dropout)
        if tie_weights:
            # Tied weights (Press & Wolf 2017; Inan et al. 2017): h is projected into the embedding's space
            # and scored against the embedding table itself, so row k both embeds character k and scores
            # it. With ~4.6 k Chinese characters the output layer costs more than the LSTM (H x V per
            # character); through E it costs E/H of that, and a rare character's output row also learns
            # from every time it is read.
            self.proj = nn.Linear(hidden_size, embed_dim)    # (.., H) -> (.., E)
            self.head = nn.Linear(embed_dim, vocab_size)     # (.., E) -> (.., V), weight = the embedding
            self.head.weight = self.embedding.weight
            nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # N(0, 1) rows would start as huge logits
        else:
            self.proj = nn.Identity()
            self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, ids: torch.Tensor, state=None):
        """ids: (B, T) long, state: None (zeros) or the previous chunk's final state
        -> logits (B, T, V), state (LSTM: (h, c), GRU: h; each (layers, B, H))."""
        x = self.dropout(self.embedding(ids))        # (B, T, E)
        out, state = self.rnn(x, state)              # (B, T, H): LSTM (L1)-(L6) or GRU (G1)-(G4) at each step
        return self.head(self.proj(self.dropout(out))), state   # (B, T, V)

    @torch.no_grad()
    def generate(self, vocab: CharVocab, prompt: str, length: int, *, temperature: float = 0.8,
                 top_k: int = 0, top_p: float = 1.0, seed: int | None = None) -> str:
        """Continue `prompt` by `length` characters, one at a time, feeding each sampled character back.

        The prompt is read in one call (warming up the hidden state), then the cell runs step by step with
        its state carried: O(length) steps, no re-reading of the growing text. Each next character is drawn
        from softmax(logits / temperature), cut to the top_k likeliest and to the top_p nucleus (§11).
        Characters of the prompt the model never saw are skipped (the caller warns: `vocab.unknown(prompt)`).
        """
        self.eval()
        device = next(self.parameters()).device
        g = torch.Generator(device="cpu")
        g.manual_seed(seed if seed is not None else int(torch.randint(2**31 - 1, (1,))))
        ids = [i for i in vocab.encode(GENERATION_WARMUP + prompt).tolist() if i != 0]
        logits, state = self(torch.tensor([ids], device=device))        # (1, P, V)
        out = []
        with one_step_friendly(device):
            for _ in range(length):
                probs = sampling_distribution(logits[0, -1].float(), temperature, top_k, top_p).cpu()  # (V,)
                probs[0] = 0.0                                           # never emit the unknown marker
                nxt = int(torch.multinomial(probs / probs.sum(), 1, generator=g))
                out.append(nxt)
                logits, state = self(torch.tensor([[nxt]], device=device), state)  # one step: (1, 1, V)
        return vocab.decode(out)


# ----------------------------------------------------------------------------------------------------
# Training: one truncated-BPTT step in plain sight, and the report loop around it (a time budget,
# validation in nats/char, the best checkpoint)
# ----------------------------------------------------------------------------------------------------
def detach_state(state):
    """(T2) sg(state): cut the graph at the chunk boundary (truncated BPTT, THEORY.md §10): keep the values,
    drop the history, so backward stops here. pytorch/examples calls this `repackage_hidden`."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # LSTM: (h, c)
    return state.detach()                        # GRU: h


def train_step(model: CharRNN, x: torch.Tensor, y: torch.Tensor, state, optimizer: torch.optim.Optimizer,
               clip: float | None):
    """One gradient step on one chunk of every stream: what `train_char_model` runs for each chunk.
    x, y: (B, T) character ids, y = x one character on (T1); state: the previous chunk's final state
    (LSTM (h, c), GRU h; each (layers, B, H)), or None at the start of a pass (zeros).
    -> (the chunk's mean loss in nats/char, the gradient norm before clipping, this chunk's final state)."""
    state = detach_state(state)                  # (T2) sg(state): keep the values, cut the graph
    logits, state = model(x, state)              # (B, T, V); state: where the next chunk starts
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))  # mean over B*T
    value = loss.item()
    stop_if_not_finite("loss", value, optimizer)  # a NaN stops here, before it reaches the weights
    optimizer.zero_grad(set_to_none=True)        # .grad accumulates: clear the last chunk's
    loss.backward()                              # back through this chunk only: the state came in detached
    norm = clip_gradients(model, clip)           # ||g|| before clipping, then g capped at clip (C2), §9
    stop_if_not_finite("gradient norm", norm, optimizer)
    optimizer.step()                             # the AdamW update
    return value, norm, state


class BudgetSchedule:
    """Linear warm-up, then cosine decay to `min_frac` * lr, driven by progress = the larger of
    (steps done / total steps) and (seconds spent / budget): the learning rate anneals on time even when
    a busy CPU makes every step slower, and `done()` says when the budget is spent. max_minutes <= 0:
    no time budget, the steps alone decide."""

    def __init__(self, optimizer: torch.optim.Optimizer, lr: float, total_steps: int, max_minutes: float,
                 warmup_steps: int = 100, min_frac: float = 0.05):
        self.opt, self.lr, self.total = optimizer, lr, max(total_steps, 1)
        self.warmup, self.min_frac = warmup_steps, min_frac
        self.budget = max_minutes * 60 if max_minutes and max_minutes > 0 else math.inf
        self.steps, self.t0 = 0, time.time()

    def progress(self) -> float:
        return min(1.0, max(self.steps / self.total, (time.time() - self.t0) / self.budget))

    def done(self) -> bool:
        return self.progress() >= 1.0

    def step(self) -> None:
        warm = min(1.0, (self.steps + 1) / self.warmup) if self.warmup else 1.0
        cosine = self.min_frac + (1 - self.min_frac) * 0.5 * (1 + math.cos(math.pi * self.progress()))
        for group in self.opt.param_groups:
            group["lr"] = self.lr * warm * cosine
        self.steps += 1


def train_char_model(model: CharRNN, data: dict, *, epochs: int, lr: float, weight_decay: float, clip: float,
                     max_minutes: float, patience: int, checkpoint_path: Path, prompt: str | None = None,
                     sample_len: int = 200, seed: int = 0, progress: ProgressLog | None = None) -> dict:
    """Truncated BPTT with AdamW on data['streams']['train'] (a CharStreams with chunks_per_epoch): a
    `train_step` per chunk, the state carried from each chunk to the next. After every `chunks_per_epoch`
    chunks a report (an "epoch") validates on data['streams']['val'], saves the best weights (with the
    vocabulary) to checkpoint_path and, given a prompt, prints a sample at temperature 0.8 (kept in the
    report's row as 'sample', so progress.jsonl shows how the text improves).

    Training ends after `epochs` reports, when the time budget is spent (the report is still made), or after
    `patience` reports without a better validation loss; the best weights are restored at the end.
    Each report's row also has the gradient norm before clipping (mean, max, share of chunks clipped) and
    characters/s; `progress` (a ProgressLog) receives it at once (progress.jsonl, live curves, TensorBoard).
    A NaN/infinite loss stops with one error line naming the report and chunk, keeping the best checkpoint;
    so does Ctrl-C. Returns {'history': a row per report, 'best_epoch', 'best_value', 'epochs_run',
    'train_time_s', 'chars_seen'}.
    """
    if epochs < 1:
        raise UserError(f"--EPOCHS must be at least 1, got {epochs}.")
    streams = data["streams"]["train"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = BudgetSchedule(optimizer, lr, epochs * len(streams), max_minutes)
    extra = char_checkpoint_extra(model, data["vocab"], data["corpus"]["source"],
                                  data["corpus"].get("dataset", ""))
    history, best_state, best, best_epoch, bad_epochs, state = [], None, math.inf, 0, 0, None
    t_start, epoch = time.time(), 0
    if progress is not None:
        progress.start(epochs)
    try:
        for epoch in range(1, epochs + 1):
            t0, total, n, norms, clipped = time.time(), 0.0, 0, [], 0
            model.train()
            bar = tqdm(streams, desc=f"report {epoch}/{epochs} ({len(streams)} chunks)", leave=False,
                       dynamic_ncols=True)
            for x, y, reset in bar:                                  # x, y: (B, T); y = x one character on
                if schedule.done():                                  # the time budget is spent
                    break
                schedule.step()                                      # warm-up, then cosine to the budget
                state = None if reset else state                     # a new pass starts from zeros
                try:                                                 # train_step detaches the carried state
                    value, norm, state = train_step(model, x, y, state, optimizer, clip)
                except NonFiniteLoss as e:                           # say where: this report, this chunk
                    raise e.at(f"report {epoch}, chunk {n + 1}") from None
                total, n = total + value, n + 1
                norms.append(norm)
                clipped += bool(clip) and norm > clip
                bar.set_postfix(loss=f"{total / n:.4f}", grad=f"{norm:.2f}",
                                lr=f"{optimizer.param_groups[0]['lr']:.1e}")
            train_s = time.time() - t0
            val = evaluate_char_model(model, data["streams"]["val"])
            row = {"epoch": epoch, "train_loss": total / max(n, 1), "val_loss": val["nats_per_char"],
                   "val_bits_per_char": val["bits_per_char"], "val_perplexity": val["perplexity"],
                   "lr": optimizer.param_groups[0]["lr"], **gradient_summary(norms, clipped),
                   "chars_per_s": round(n * streams.B * streams.T / max(train_s, 1e-9), 1),
                   "epoch_time_s": round(time.time() - t0, 2),
                   "chars_seen": schedule.steps * streams.B * streams.T}
            history.append(row)
            improved = best_state is None or row["val_loss"] < best - 1e-12
            if improved:
                best, best_epoch, bad_epochs = row["val_loss"], epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                save_checkpoint({"state_dict": best_state, "epoch": epoch, **extra}, checkpoint_path)
            else:
                bad_epochs += 1
            tqdm.write(epoch_line({k: v for k, v in row.items() if k != "chars_seen"}, improved))
            if prompt is not None:  # its own generator: sampling leaves the training's random stream alone
                row["sample"] = show_samples(model, data["vocab"], prompt, (0.8,), sample_len,
                                             seed=seed)["0.8"]
            if progress is not None:
                progress.epoch(row)
            if bad_epochs >= patience:
                tqdm.write(f"early stopping: no improvement in val_loss for {patience} reports "
                           f"(best report {best_epoch}).")
                break
            if schedule.done():
                if epoch < epochs:
                    tqdm.write(f"time budget of {max_minutes:g} min spent: training ends after report "
                               f"{epoch}.")
                break
    except (KeyboardInterrupt, NonFiniteLoss) as e:
        stopped_early(e, epoch, checkpoint_path if best_state is not None else None, best_epoch, progress)
    model.load_state_dict(best_state)
    result = {"history": history, "best_epoch": best_epoch, "best_value": best, "epochs_run": len(history),
              "train_time_s": round(time.time() - t_start, 2),
              "chars_seen": schedule.steps * streams.B * streams.T}
    if progress is not None:
        progress.end({"best_val_nats_per_char": best, "best_epoch": best_epoch, "epochs_run": len(history),
                      "train_time_s": result["train_time_s"]})
    return result


@torch.no_grad()
def evaluate_char_model(model: CharRNN, streams: CharStreams) -> dict:
    """One pass over `streams` with the hidden state carried chunk to chunk -> {'nats_per_char',
    'bits_per_char' (nats / ln 2), 'perplexity' (e^nats: 'as unsure as a fair die with this many faces')}.
    Every chunk has B*T characters, so the mean over chunks is the mean over characters."""
    model.eval()
    total, chunks, state = 0.0, 0, None
    for x, y, reset in streams:                                      # (B, T) each
        logits, state = model(x, None if reset else state)           # (B, T, V)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        total += float(loss)                                         # summed in float64
        chunks += 1
    nats = total / max(chunks, 1)                                    # bits and perplexity from the same mean
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2), "perplexity": math.exp(nats),
            "chars_scored": chunks * streams.B * streams.T}


# ----------------------------------------------------------------------------------------------------
# Save and load
# ----------------------------------------------------------------------------------------------------
CHAR_CASE = "04_text_gen"  # the tag in this case's checkpoints (utils.training.checkpoint_tag)


def char_checkpoint_extra(model: CharRNN, vocab: CharVocab, source: str, dataset: str = "") -> dict:
    """Beside the weights: what the file holds (case and cell), the constructor arguments, the vocabulary as
    one plain string, the data source and its name ('shakespeare', 'peoples_daily', 'text')."""
    return {**checkpoint_tag(CHAR_CASE, model.hparams["cell"]), "hparams": dict(model.hparams),
            "chars": vocab.chars, "source": source, "dataset": dataset}


def load_char_model(path: Path | str, device: torch.device | str = "cpu", impl: str | None = None,
                    cell: str | None = None, script: str = ""):
    """A saved text_lstm/text_gru model.pt -> (model in eval mode on device, CharVocab, checkpoint dict).
    `impl` overrides the saved implementation (a scratch-trained model can generate with torch.nn). A file
    of another case, of the other cell than `cell` ('lstm'/'gru', None: either), or one whose parts do not
    fit together is refused in one line (`script` names who refuses it)."""
    ckpt = load_checkpoint(path, map_location=device,
                           expected=f"a {CHAR_CASE} {cell.upper() if cell else 'character-model'} checkpoint")
    check_checkpoint(ckpt, path, case=CHAR_CASE, cell=cell, needs=("state_dict", "hparams", "chars"),
                     script=script)
    with weights_that_fit(path):              # a damaged or hand-edited file: one line naming it
        vocab = CharVocab(ckpt["chars"])
        hparams = dict(ckpt["hparams"], **({"impl": impl} if impl else {}))
        if hparams.get("vocab_size") != len(vocab):
            raise UserError(f"checkpoint {path} does not match its vocabulary "
                            f"({hparams.get('vocab_size')} vs {len(vocab)} characters); retrain the model.")
        model = CharRNN(**hparams, device=device).to(device)
        model.load_state_dict(ckpt["state_dict"])
    return model.eval(), vocab, ckpt


def saved_checkpoint(script_file: str | Path, folder: str = "", *, quick: bool = False,
                     name: str = "model.pt", sub: str | None = None) -> tuple[Path | None, list[Path]]:
    """The checkpoint a training script saved, for a script that reads it (creative_writing.py reads
    text_lstm/text_gru's, pronounce.py g2p_lstm/g2p_gru's): that script's full run
    (outputs/04_text_gen/<stem>/<name>), or <folder>/<stem>/<name> when the learner named a folder; with
    quick, a --quick run's is the second choice. -> (the first that exists or None, the paths looked at,
    for the message when there is none). sub: the run's subfolder (a dataset: 'peoples_daily')."""
    stem = Path(script_file).stem
    if folder:
        candidates = [Path(folder) / stem / (sub or "") / name]
    else:
        candidates = [output_dir(script_file, sub, create=False) / name]
        if quick:
            candidates.append(output_dir(script_file, sub, quick=True, create=False) / name)
    return next((p for p in candidates if p.is_file()), None), candidates


# ----------------------------------------------------------------------------------------------------
# Reporting: samples, the generated text's own measures, the result table and metrics.json
# ----------------------------------------------------------------------------------------------------
def show_samples(model: CharRNN, vocab: CharVocab, prompt: str, temperatures, length: int,
                 seed: int = 0) -> dict:
    """Print one continuation of `prompt` per temperature; return {temperature: text}."""
    samples = {}
    for temp in temperatures:
        text = model.generate(vocab, prompt, length, temperature=temp, seed=seed)
        samples[str(temp)] = text
        tqdm.write(f"--- sample, temperature {temp}:\n{prompt}{text}\n")
    model.train()
    return samples


@torch.no_grad()
def text_log_likelihood(model: CharRNN, vocab: CharVocab, context: str, text: str) -> float:
    """The model's own mean log-probability (nats/char, <= 0) of `text` following `context`: how
    plausible the model finds what it wrote. High at low temperature, falling as temperature rises."""
    model.eval()
    device = next(model.parameters()).device
    ids = vocab.encode(GENERATION_WARMUP + context + text).to(device)[None]  # (1, N), warmed up as generate
    logits, _ = model(ids[:, :-1])                                           # (1, N-1, V)
    logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None])[0, :, 0]  # (N-1,)
    return float(logp[-len(text):].mean()) if len(text) else 0.0


def distinct_n(text: str, n: int) -> float:
    """Distinct character n-grams / all n-grams (Li et al. 2016): 1.0 = no n-gram repeats."""
    grams = [text[i:i + n] for i in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repeated_ngram_rate(text: str, n: int) -> float:
    """Share of the word n-grams that already occurred earlier in the text: loops and stock phrases."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


def char_lm_report(out: Path, *, config: dict, model: CharRNN, data: dict, result: dict, final: dict,
                   samples: dict, device, start_time: float, title: str) -> dict:
    """The result table (model vs n-gram baseline), out/metrics.json and out/training_curves.png."""
    base = data["baseline"]
    rows = [{"model": f"add-{base['add_k']:g} char {base['order']}-gram", "nats/char": base["nats_per_char"],
             "bits/char": base["bits_per_char"], "perplexity": base["perplexity"], "parameters": ""},
            {"model": title, "nats/char": final["nats_per_char"], "bits/char": final["bits_per_char"],
             "perplexity": final["perplexity"], "parameters": count_parameters(model)}]
    print_table(rows,
                title=f"Validation: the same {final['chars_scored']:,} of {len(data['corpus']['val']):,} "
                            f"held-out characters for both (whole chunks of the evaluation streams)")
    metrics = {"val_nats_per_char": final["nats_per_char"], "val_bits_per_char": final["bits_per_char"],
               "val_perplexity": final["perplexity"], "baseline_nats_per_char": base["nats_per_char"],
               "baseline_bits_per_char": base["bits_per_char"],
               "improvement_over_baseline_nats": base["nats_per_char"] - final["nats_per_char"],
               "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
               "train_time_s": result["train_time_s"], "chars_seen": result["chars_seen"],
               "train_chars": len(data["corpus"]["train"]), "val_chars": len(data["corpus"]["val"]),
               "val_chars_scored": final["chars_scored"],              # by the model and the baseline alike
               "vocab_size": len(data["vocab"]), "parameters": count_parameters(model)}
    plot_training_curves(result["history"], out / "training_curves.png",
                         title=f"{title}：损失，单位 nats/char（基线 {base['nats_per_char']:.3f}）\n"
                               f"{title}: loss in nats/char (baseline {base['nats_per_char']:.3f})",
                         metrics=["val_bits_per_char"])
    save_metrics(out, config=config, metrics=metrics, history=result["history"], start_time=start_time,
                 device=device, extra={"samples": samples, "baseline": base,
                                       "val_plays": data["corpus"]["val_plays"],
                                       "source": data["corpus"]["source"]})
    return metrics
