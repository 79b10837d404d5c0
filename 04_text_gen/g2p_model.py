"""04_text_gen's sequence-to-sequence mechanism: spelling in, pronunciation out (grapheme-to-phoneme, G2P).

Read top to bottom: the symbols and the fixed split of the CMU Pronouncing Dictionary, the batches, the
encoder-decoder with Luong attention (THEORY.md §13, (E1)-(E8)) with its greedy and beam-search decoding (B1),
the training step `train_step` (teacher forcing (E9), §9 clipping) and its validation by word and phoneme
error rate (W1), scoring, save/load, and the report (tables, attention heatmaps, error rate by word
length). g2p_lstm.py / g2p_gru.py tell the story with these pieces; pronounce.py says
any word with the trained models. The raw dictionary comes from utils.data_utils.load_cmudict.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from utils.data_utils import CMUDICT_LETTERS, data_dir, load_cmudict, pad_batch
from utils.model_utils import count_parameters, init_forget_bias, make_rnn
from utils.script_utils import UserError, output_dir, print_table, save_json, save_metrics
from utils.training import (
    ProgressLog,
    check_checkpoint,
    checkpoint_tag,
    clip_gradients,
    fit,
    load_checkpoint,
    stop_if_not_finite,
    weights_that_fit,
)
from utils.visualization import color_for, plt, save_figure

# ----------------------------------------------------------------------------------------------------
# 1. Symbols: letters in, phonemes out
# ----------------------------------------------------------------------------------------------------
# Letter ids: 0 = <pad>, then ' and a-z. Phoneme ids: 0 = <pad>, 1 = <s> (start: the decoder's first
# input), 2 = </s> (end: the decoder's last output), then the 39 ARPAbet phonemes, stress digits removed.
PAD, BOS, EOS = 0, 1, 2
LETTERS = CMUDICT_LETTERS
PHONEMES = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
            "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V",
            "W", "Y", "Z", "ZH")
# What each phoneme sounds like: the example words of the table on the CMU Pronouncing Dictionary web page
PHONEME_EXAMPLES = {"AA": "odd", "AE": "at", "AH": "hut", "AO": "ought", "AW": "cow", "AY": "hide", "B": "be",
                    "CH": "cheese", "D": "dee", "DH": "thee", "EH": "Ed", "ER": "hurt", "EY": "ate",
                    "F": "fee", "G": "green", "HH": "he", "IH": "it", "IY": "eat", "JH": "gee", "K": "key",
                    "L": "lee", "M": "me", "N": "knee", "NG": "ping", "OW": "oat", "OY": "toy", "P": "pee",
                    "R": "read", "S": "sea", "SH": "she", "T": "tea", "TH": "theta", "UH": "hood",
                    "UW": "two", "V": "vee", "W": "we", "Y": "yield", "Z": "zee", "ZH": "seizure"}
LETTER_IDS = {c: i + 1 for i, c in enumerate(LETTERS)}
PHONEME_IDS = {p: i + 3 for i, p in enumerate(PHONEMES)}
N_LETTERS, N_PHONEMES = len(LETTERS) + 1, len(PHONEMES) + 3
MAX_WORD_LEN = 40          # a longer "word" is refused (the dictionary's longest has 28 letters)

SPLIT_SEED = 2026          # fixed on purpose: every script, every SEED and 06 use the same words for testing
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)


def check_word(text: str) -> str:
    """A word as the model reads it: lower case, letters a-z and the apostrophe only. Anything else
    (empty, digits, other scripts, spaces) is a UserError that says what was wrong."""
    word = text.strip().lower()
    if not word:
        raise UserError("the word is empty; type a word made of the letters a-z, e.g. --WORD=quixotic.")
    bad = [c for c in dict.fromkeys(word) if c not in LETTER_IDS]
    if bad:
        kinds = ("digits" if any(c.isdigit() for c in bad) else "spaces" if any(c.isspace() for c in bad)
                 else "letters outside a-z" if any(c.isalpha() for c in bad) else "symbols")
        raise UserError(f"{text!r} contains {kinds} ({', '.join(map(repr, bad[:5]))}): the model reads "
                        f"English spelling only, the letters a-z and the apostrophe (one word, spell numbers "
                        f"out).")
    if not any(c != "'" for c in word):
        raise UserError(f"{text!r} has no letters; type a word made of the letters a-z.")
    if len(word) > MAX_WORD_LEN:
        raise UserError(f"{text[:20]!r}... has {len(word)} characters; at most {MAX_WORD_LEN} are read.")
    return word


def is_word(text: str) -> bool:
    """Whether check_word accepts the text (for the scripts' CHECKS on their EXAMPLES)."""
    try:
        check_word(text)
        return True
    except UserError:
        return False


def encode_word(word: str) -> list[int]:
    return [LETTER_IDS[c] for c in word]


def encode_phonemes(phones: Sequence[str]) -> tuple[int, ...]:
    return tuple(PHONEME_IDS[p] for p in phones)


def decode_phonemes(ids: Sequence[int]) -> list[str]:
    """Phoneme ids -> ARPAbet symbols, stopping at </s> (special ids are dropped)."""
    out = []
    for i in ids:
        if i == EOS:
            break
        if i >= 3:
            out.append(PHONEMES[i - 3])
    return out


def spelling_group(word: str) -> str:
    """The key that keeps near-identical spellings in one part of the split: the word without apostrophes
    ('em / em, americas' / americas / america's). Split by exact spelling, 4.5% of the test words had a
    training twin that differs only by an apostrophe, mostly with the same pronunciation: a lookup, not a
    test of spelling-to-sound."""
    return word.replace("'", "")


def g2p_split(cache: Path | None = None) -> dict[str, dict[str, list[tuple[str, ...]]]]:
    """The fixed split by spelling group, 90/5/5 of the words, shuffled with SPLIT_SEED
    -> {'train'|'val'|'test': {word: prons}}.

    Words are grouped by `spelling_group` (the spelling without apostrophes) and whole groups are dealt to
    the parts in a shuffled order, so a word, all its pronunciations and its apostrophe variants sit in one
    part only. The word lists are saved once as JSON in 04_text_gen/data/ (like 02's split), so every run,
    seed and cell tests on the same 6.2k words; a file that no longer matches the dictionary, or that was
    made by another rule, is rebuilt."""
    entries = load_cmudict(keep_stress=False)
    path = (Path(cache) if cache is not None else data_dir("04_text_gen")) / "cmudict_split.json"
    parts = None
    if path.is_file():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if (saved.get("seed") == SPLIT_SEED and saved.get("grouped_by") == "spelling without apostrophes"
                    and sorted(w for p in ("train", "val", "test") for w in saved[p]) == sorted(entries)):
                parts = saved
        except (ValueError, KeyError, TypeError):
            pass
        if parts is None:
            print(f"{path} does not match the dictionary or the split rule: rebuilding the split.")
    if parts is None:
        groups: dict[str, list[str]] = {}
        for word in sorted(entries):
            groups.setdefault(spelling_group(word), []).append(word)
        keys = sorted(groups)
        order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
        a = round(SPLIT_FRACTIONS[0] * len(entries))      # words (not groups) in train, then train+val
        b = a + round(SPLIT_FRACTIONS[1] * len(entries))
        chosen: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        placed = 0
        for k in order:                                           # whole groups, until each part is full
            part = "train" if placed < a else "val" if placed < b else "test"
            chosen[part] += groups[keys[k]]
            placed += len(groups[keys[k]])
        parts = {"seed": SPLIT_SEED, "stress": "removed", "grouped_by": "spelling without apostrophes",
                 **{p: sorted(w) for p, w in chosen.items()}}
        save_json(parts, path)
    return {p: {w: entries[w] for w in parts[p]} for p in ("train", "val", "test")}


# ----------------------------------------------------------------------------------------------------
# 2. Batches: words of similar length together; teacher forcing shifts the target by one
# ----------------------------------------------------------------------------------------------------
class WordBatches:
    """Padded batches of (word, pronunciation) examples, words of similar length together (less padding).

    An example is (letter ids, phoneme ids, refs): refs are every accepted pronunciation of the word.
    Each batch is (letters (B, S), lengths (B,), dec_in (B, T), dec_out (B, T), refs): teacher forcing
    (E9) feeds the decoder dec_in = <s> y1 .. yn and asks it for dec_out = y1 .. yn </s>, the same
    phonemes one step ahead. Training shuffles: pools of 50 batches sorted by length, batches shuffled.
    """

    def __init__(self, examples: list, batch_size: int, shuffle: bool, seed: int = 0):
        self.examples, self.batch_size, self.shuffle = examples, batch_size, shuffle
        self.g = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.examples) + self.batch_size - 1) // self.batch_size

    def _order(self) -> list[list[int]]:
        n, bs = len(self.examples), self.batch_size
        length = lambda i: len(self.examples[i][0])  # noqa: E731
        if not self.shuffle:
            order = sorted(range(n), key=length)
            return [order[i:i + bs] for i in range(0, n, bs)]
        order, batches = torch.randperm(n, generator=self.g).tolist(), []
        for s in range(0, n, 50 * bs):
            pool = sorted(order[s:s + 50 * bs], key=length)
            batches += [pool[i:i + bs] for i in range(0, len(pool), bs)]
        return [batches[j] for j in torch.randperm(len(batches), generator=self.g).tolist()]

    def __iter__(self):
        for idx in self._order():
            letters, lengths = pad_batch([self.examples[i][0] for i in idx])               # (B, S), (B,)
            dec_in, _ = pad_batch([(BOS,) + self.examples[i][1] for i in idx])             # (B, T)
            dec_out, _ = pad_batch([self.examples[i][1] + (EOS,) for i in idx])            # (B, T)
            yield letters, lengths, dec_in, dec_out, [self.examples[i][2] for i in idx]


def make_examples(part: dict[str, list], every_pronunciation: bool) -> list:
    """{word: prons} -> examples. Training uses every pronunciation as its own example; evaluation one
    example per word (its first pronunciation for the loss), every pronunciation accepted as correct."""
    examples = []
    for word, prons in part.items():
        refs = tuple(encode_phonemes(p) for p in prons)
        for ref in (refs if every_pronunciation else refs[:1]):
            examples.append((encode_word(word), ref, refs))
    return examples


def prepare_g2p_data(batch_size: int, *, max_train_words: int = 0, max_eval_words: int = 0,
                     seed: int = 0) -> dict:
    """The split -> examples -> batches. max_*_words > 0 keep only that many words (--quick), taken evenly
    across the alphabetical list. Returns {'split', 'examples', 'batches': {'train', 'val'}}."""
    split = g2p_split()

    def cut(part: dict, n: int) -> dict:
        if n <= 0 or n >= len(part):
            return part
        words = sorted(part)
        return {words[i * len(words) // n]: part[words[i * len(words) // n]] for i in range(n)}

    split = {"train": cut(split["train"], max_train_words), "val": cut(split["val"], max_eval_words),
             "test": cut(split["test"], max_eval_words)}
    examples = {"train": make_examples(split["train"], True), "val": make_examples(split["val"], False),
                "test": make_examples(split["test"], False)}
    batches = {"train": WordBatches(examples["train"], batch_size, shuffle=True, seed=seed),
               "val": WordBatches(examples["val"], 512, shuffle=False)}
    several = sum(len(p) > 1 for p in split["test"].values())
    print(f"CMUdict: {len(split['train']):,} training words ({len(examples['train']):,} pronunciations), "
          f"{len(split['val']):,} validation, {len(split['test']):,} test words ({several} with several "
          f"accepted pronunciations); {len(LETTERS)} letters -> {len(PHONEMES)} phonemes (stress removed)")
    return {"split": split, "examples": examples, "batches": batches}


# ----------------------------------------------------------------------------------------------------
# 3. The model: encoder (E1)-(E2), attention (E4)-(E6), decoder (E3), (E7)-(E8)
# ----------------------------------------------------------------------------------------------------
def first_of(state):
    """An LSTM's state is (h, c); a GRU's is h. -> h: (layers * directions, B, H)."""
    return state[0] if isinstance(state, tuple) else state


class Seq2Seq(nn.Module):
    """Letters -> bidirectional encoder -> decoder with Luong attention (or a fixed summary) -> phonemes.

    attention=True: at each output step the decoder looks back at every letter (E4)-(E6).
    attention=False: the whole word must pass through one vector c̄ (E2), fed to every output step (E6'), as
    in Cho et al. 2014; everything else is identical, so the difference is attention alone.
    `hparams` holds every constructor argument, so a checkpoint can rebuild the model.
    """

    def __init__(self, *, cell: str, impl: str = "torch", attention: bool = True, embed_dim: int = 64,
                 hidden_size: int = 256, enc_layers: int = 1, dec_layers: int = 1, dropout: float = 0.1,
                 forget_bias: float | None = None, device: torch.device | str = "cpu"):
        super().__init__()
        self.hparams = dict(cell=cell, impl=impl, attention=attention, embed_dim=embed_dim,
                            hidden_size=hidden_size, enc_layers=enc_layers, dec_layers=dec_layers,
                            dropout=dropout, forget_bias=forget_bias)
        self.attention, self.dec_layers, self.is_lstm = attention, dec_layers, cell.lower() == "lstm"
        if hidden_size < 2:
            raise UserError(f"--HIDDEN_SIZE must be an integer >= 2 (each encoder direction gets half), "
                            f"got {hidden_size}.")
        H, M = hidden_size, 2 * (hidden_size // 2)                # M: an encoder vector s_j, both directions
        self.letter_embedding = nn.Embedding(N_LETTERS, embed_dim, padding_idx=PAD)
        # H/2 per direction: s_j has H numbers, like d_t
        self.encoder = make_rnn(cell, impl, embed_dim, H // 2, enc_layers, dropout=dropout,
                                bidirectional=True, device=device)
        self.bridge = nn.Linear(M, dec_layers * H)                # (E2): c̄ -> the decoder's first state
        self.phoneme_embedding = nn.Embedding(N_PHONEMES, embed_dim, padding_idx=PAD)
        self.decoder = make_rnn(cell, impl, embed_dim, H, dec_layers, dropout=dropout, device=device)
        if self.is_lstm and forget_bias is not None:
            init_forget_bias(self.encoder, forget_bias)
            init_forget_bias(self.decoder, forget_bias)
        self.W_a = nn.Linear(M, H, bias=False)                    # (E4) Luong's "general" score
        self.W_c = nn.Linear(M + H, H)                            # (E7) context + state -> attentional state
        self.out = nn.Linear(H, N_PHONEMES)                       # (E8)
        self.dropout = nn.Dropout(dropout)

    # -- the encoder ------------------------------------------------------------------------------------
    def encode(self, letters: torch.Tensor, lengths: torch.Tensor):
        """letters: (B, S) long, 0 = <pad>; lengths: (B,) on CPU -> memory (B, S, H): s_j (E1), both
        directions of H/2 each; mask (B, S) bool (True on real letters); summary c̄ (B, H); the decoder's
        first state (E2)."""
        S = letters.shape[1]
        x = self.dropout(self.letter_embedding(letters))                                 # (B, S, E)
        # Packing (THEORY.md §5): each direction reads exactly the word's letters, never its padding, so
        # the backward direction starts at the word's real last letter.
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)                          # each step: (L1)-(L6) or (G1)-(G4)
        memory, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=S)  # (B, S, H)
        h_n = first_of(state)                                      # (layers * 2, B, H/2)
        # (E2) c̄ = [forward after the last letter; backward after the first]: (B, H)
        summary = torch.cat([h_n[-2], h_n[-1]], dim=1)
        h0 = torch.tanh(self.bridge(summary))                      # (B, layers * H)
        h0 = h0.view(-1, self.dec_layers, h0.shape[1] // self.dec_layers).transpose(0, 1).contiguous()
        state0 = (h0, torch.zeros_like(h0)) if self.is_lstm else h0  # (layers, B, H); an LSTM's c starts at 0
        mask = torch.arange(S, device=letters.device)[None, :] < lengths.to(letters.device)[:, None]
        return memory, mask, summary, state0

    # -- attention and the output layer ---------------------------------------------------------------
    def attend(self, d: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, summary: torch.Tensor):
        """d: (B, T, H) decoder states d_t; memory (B, S, H); mask (B, S) -> logits (B, T, V),
        alpha (B, T, S): how much each output step looked at each letter (None without attention)."""
        if self.attention:
            # (E4) e_tj = d_t . W_a s_j;  (E5) alpha_t = softmax_j(e_tj);  (E6) c_t = sum_j alpha_tj s_j
            scores = d @ self.W_a(memory).transpose(1, 2)                      # (E4): (B, T, S)
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))      # padding gets no weight
            alpha = torch.softmax(scores, dim=-1)                              # (E5) over the letters
            context = alpha @ memory                                           # (E6): (B, T, H)
        else:
            # (E6') c_t = c̄ for every t
            alpha, context = None, summary[:, None, :].expand(-1, d.shape[1], -1)
        tilde = torch.tanh(self.W_c(torch.cat([context, d], dim=-1)))          # (E7): (B, T, H)
        return self.out(self.dropout(tilde)), alpha                            # (E8) logits: (B, T, V)

    # -- teacher forcing: all output steps at once ----------------------------------------------------
    def forward(self, letters, lengths, dec_in):
        """Teacher forcing (E9): the decoder reads the true previous phonemes dec_in (B, T), so all T steps
        run in one call of the RNN (the attention uses d_t and feeds nothing back into the RNN: Luong
        without input feeding). -> logits (B, T, V), alpha (B, T, S) or None."""
        memory, mask, summary, state = self.encode(letters, lengths)
        # (E3) for every t: (B, T, H)
        d, _ = self.decoder(self.dropout(self.phoneme_embedding(dec_in)), state)
        return self.attend(d, memory, mask, summary)

    # -- decoding: one step at a time, the model's own previous output as input -----------------------
    def step(self, y_prev, state, memory, mask, summary):
        """y_prev (N,) long, state (layers, N, H) -> log p(y_t | ...) (N, V), new state, alpha (N, S)."""
        d, state = self.decoder(self.phoneme_embedding(y_prev)[:, None, :], state)  # (E3): (N, 1, H)
        logits, alpha = self.attend(d, memory, mask, summary)
        logits = logits[:, 0].float()
        logits[:, [PAD, BOS]] = float("-inf")      # a decoded word holds only phonemes and </s>
        return (torch.log_softmax(logits, dim=-1), state,
                alpha[:, 0] if alpha is not None else None)

    @torch.no_grad()
    def greedy(self, letters, lengths, max_len: int):
        """Pick the most likely phoneme at every step and feed it back. -> ids (B, T') long (</s> ends a
        word; later ids are padding), alpha (B, T', S) or None, T' <= max_len."""
        self.eval()
        memory, mask, summary, state = self.encode(letters, lengths)
        y = torch.full((letters.shape[0],), BOS, dtype=torch.long, device=letters.device)
        done = torch.zeros_like(y, dtype=torch.bool)
        ids, alphas = [], []
        for _ in range(max_len):
            logp, state, alpha = self.step(y, state, memory, mask, summary)
            y = logp.argmax(-1).masked_fill(done, PAD)                          # (B,)
            ids.append(y)
            alphas.append(alpha)
            done |= y == EOS
            if done.all():
                break
        return torch.stack(ids, 1), (torch.stack(alphas, 1) if self.attention else None)

    @torch.no_grad()
    def beam_search(self, letters, lengths, max_len: int, beam: int = 5):
        """Keep the `beam` most likely prefixes of every word (B1), all B*K of them as one batch.
        -> ids (B, T') long of the best finished hypothesis per word, its log-probability (B,)."""
        self.eval()
        B, K, dev = letters.shape[0], beam, letters.device
        memory, mask, summary, state = self.encode(letters, lengths)
        # every hypothesis k of word b becomes row b*K + k: repeat the encoder's output K times
        rep = lambda t: t.repeat_interleave(K, dim=0)                            # noqa: E731
        memory, mask, summary = rep(memory), rep(mask), rep(summary)
        state = (tuple(s.repeat_interleave(K, dim=1) for s in state) if self.is_lstm
                 else state.repeat_interleave(K, dim=1))                         # (layers, B*K, H)
        score = torch.full((B, K), float("-inf"), device=dev)
        # one live hypothesis to start
        score[:, 0] = 0.0
        y = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
        done = torch.zeros(B, K, dtype=torch.bool, device=dev)
        history = torch.zeros(B, K, 0, dtype=torch.long, device=dev)
        for _ in range(max_len):
            logp, state, _ = self.step(y, state, memory, mask, summary)         # (B*K, V)
            logp = logp.view(B, K, -1)
            # a finished hypothesis may only continue with </s> at no cost: it competes with its final score
            ended = torch.full_like(logp, float("-inf"))
            ended[..., EOS] = 0.0
            logp = torch.where(done[..., None], ended, logp)
            # (B, K*V): every one-step extension
            total = (score[..., None] + logp).view(B, -1)
            score, flat = total.topk(K, dim=1)                                   # (B1): the K best survive
            parent, token = flat // N_PHONEMES, flat % N_PHONEMES                # (B, K) each
            # which old row each new one continues
            rows = (parent + torch.arange(B, device=dev)[:, None] * K).view(-1)
            state = tuple(s[:, rows] for s in state) if self.is_lstm else state[:, rows]
            history = torch.cat([history.gather(1, parent[..., None].expand(-1, -1, history.shape[2])),
                                 token[..., None]], dim=2)
            done = done.gather(1, parent) | (token == EOS)
            y = token.view(-1)
            # each word's best is finished
            if done[:, 0].all():
                break
        best = score.argmax(1)                                                   # (B,)
        return history[torch.arange(B, device=dev), best], score.max(1).values


def max_output_len(lengths: torch.Tensor) -> int:
    """How many phonemes decoding may emit: 'mr' -> M IH S T ER, so a little more than twice the letters."""
    return int(2 * lengths.max()) + 4


# ----------------------------------------------------------------------------------------------------
# 4. Training: one teacher-forced step in plain sight, validation by word error rate, and utils' `fit`
# ----------------------------------------------------------------------------------------------------
def train_step(model: Seq2Seq, batch, optimizer: torch.optim.Optimizer,
               clip: float | None) -> tuple[float, float, int]:
    """One gradient step on a batch of words, teacher-forced (E9): what `fit` runs for every training batch.
    batch: letters (B, S), lengths (B,), dec_in (B, T) = <s> y1..yn, dec_out (B, T) = y1..yn </s>, refs.
    -> (the mean cross-entropy per real phoneme, the gradient norm before clipping, words in the batch)."""
    device = next(model.parameters()).device
    letters, lengths, dec_in, dec_out, _ = batch
    letters, dec_in, dec_out = letters.to(device), dec_in.to(device), dec_out.to(device)
    # encoder over the packed letters (§5, (E1)-(E2)); the decoder reads the *true* previous phonemes
    # dec_in, all T steps in one call (E3), attending to the letters (E4)-(E8)
    logits, _ = model(letters, lengths, dec_in)                                  # (B, T, V)
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), dec_out.reshape(-1),
                                       ignore_index=PAD)      # (E9) mean over real phonemes, padding skipped
    value = loss.item()
    stop_if_not_finite("loss", value, optimizer)        # a NaN stops here, before it reaches the weights
    optimizer.zero_grad(set_to_none=True)               # .grad accumulates: clear the last batch's
    loss.backward()                                     # back through decoder, attention and encoder
    norm = clip_gradients(model, clip)                  # ||g|| before clipping, then capped at clip (C2), §9
    stop_if_not_finite("gradient norm", norm, optimizer)
    optimizer.step()                                    # the AdamW update
    return value, norm, dec_out.shape[0]


def eval_step(model: Seq2Seq, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validation for `fit` (model.eval(), no gradients): the same teacher-forced loss, plus greedy decoding
    as the learner uses the model. -> (loss, each word's edit distance to its closest accepted
    pronunciation (B,), that pronunciation's length (B,)), from which `error_rates` makes the word and
    phoneme error rates."""
    device = next(model.parameters()).device
    letters, lengths, dec_in, dec_out, refs = batch
    letters, dec_in, dec_out = letters.to(device), dec_in.to(device), dec_out.to(device)
    logits, _ = model(letters, lengths, dec_in)                                  # (B, T, V)
    loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), dec_out.reshape(-1),
                                       ignore_index=PAD)                        # (E9)
    ids, _ = model.greedy(letters, lengths, max_output_len(lengths))             # (B, T'): its own outputs
    dist, ref_len, _ = zip(*(closest_reference(decode_ids(row), r) for row, r in zip(ids.tolist(), refs)))
    return loss, torch.tensor(dist), torch.tensor(ref_len)


def error_rates(dist: torch.Tensor, ref_len: torch.Tensor) -> dict:
    """Per-word edit distances (N,) and reference lengths (N,) -> word error rate (share of words with any
    error) and phoneme error rate (all edits / all reference phonemes): (W1)."""
    return {"wer": float((dist > 0).float().mean()), "per": float(dist.sum() / ref_len.sum().clamp_min(1))}


def train_g2p_model(model: Seq2Seq, data: dict, *, epochs: int, lr: float, weight_decay: float,
                    clip: float, patience: int, checkpoint_path: Path, checkpoint_extra: dict,
                    progress: ProgressLog | None = None, verbose: bool = True) -> dict:
    """AdamW + `fit` with `train_step` (teacher forcing) and `eval_step`; a cosine learning rate over the
    epochs; the epoch with the lowest validation word error rate (greedy) is kept and saved; `progress` (a
    ProgressLog) gets every epoch's row (progress.jsonl, live training_curves.png). Returns fit's result
    plus 'train_time_s'."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=lr * 0.05)
    t0 = time.time()
    result = fit(model, data["batches"]["train"], data["batches"]["val"], train_step=train_step,
                 eval_step=eval_step, epochs=epochs, optimizer=optimizer, metrics_fn=error_rates,
                 monitor="wer", mode="min", patience=patience, clip=clip, scheduler=scheduler,
                 checkpoint_path=checkpoint_path, checkpoint_extra=checkpoint_extra, progress=progress,
                 verbose=verbose)
    result["train_time_s"] = round(time.time() - t0, 2)
    return result


# ----------------------------------------------------------------------------------------------------
# 5. Scoring: edit distance, closest accepted pronunciation, greedy and beam over a whole part
# ----------------------------------------------------------------------------------------------------
def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions that turn a into b."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def closest_reference(pred: Sequence[int], refs: Sequence[Sequence[int]]) -> tuple[int, int, tuple[int, ...]]:
    """(edit distance, length, the reference itself) of the accepted pronunciation nearest to pred: a word
    with several pronunciations is right if the output matches any of them. Ties in distance go to the
    pronunciation the dictionary lists first (its most common one), whatever its length, so PER's
    denominator does not lean toward the shorter reference. Scoring and display both use this one rule."""
    dists = [edit_distance(pred, r) for r in refs]
    k = dists.index(min(dists))                    # the first of the closest
    return dists[k], len(refs[k]), tuple(refs[k])


def decode_ids(row: Sequence[int]) -> tuple[int, ...]:
    """Decoder output ids -> the phoneme ids before the first </s>."""
    out = []
    for i in row:
        if i in (EOS, PAD):
            break
        out.append(i)
    return tuple(out)


def predict(model: Seq2Seq, words: Sequence[str], device, *, beam: int = 1, batch_size: int = 256,
            progress: str = "") -> list[tuple[int, ...]]:
    """Pronounce many words: greedy (beam=1) or beam search, in batches of similar length. -> phoneme ids."""
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    out: list = [None] * len(words)
    for s in tqdm(range(0, len(order), batch_size), desc=progress, leave=False, disable=not progress):
        idx = order[s:s + batch_size]
        letters, lengths = pad_batch([encode_word(words[i]) for i in idx])
        letters, max_len = letters.to(device), max_output_len(lengths)
        ids = (model.greedy(letters, lengths, max_len)[0] if beam <= 1
               else model.beam_search(letters, lengths, max_len, beam)[0])
        for i, row in zip(idx, ids.tolist()):
            out[i] = decode_ids(row)
    return out


def score_words(part: dict[str, list], predictions: Sequence[tuple[int, ...]]) -> list[dict]:
    """One row per word: its letters, the prediction, the closest accepted pronunciation, the distance."""
    rows = []
    for (word, prons), pred in zip(part.items(), predictions):
        refs = [encode_phonemes(p) for p in prons]
        dist, n, best = closest_reference(pred, refs)
        rows.append({"word": word, "letters": len(word), "predicted": " ".join(decode_phonemes(pred)),
                     "reference": " ".join(decode_phonemes(best)), "distance": dist, "ref_len": n})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Word error rate, phoneme error rate and word count of scored rows."""
    dist = torch.tensor([r["distance"] for r in rows], dtype=torch.float)
    n = torch.tensor([r["ref_len"] for r in rows], dtype=torch.float)
    return {**error_rates(dist, n), "words": len(rows)}


LENGTH_BINS = ((1, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 40))


def by_length(rows: list[dict]) -> dict[str, dict]:
    """Error rates for words of 1-4, 5-6, ..., 13+ letters: does the model get worse as words grow?"""
    out = {}
    for lo, hi in LENGTH_BINS:
        sub = [r for r in rows if lo <= r["letters"] <= hi]
        if sub:
            out[f"{lo}-{hi}" if hi < 40 else f"{lo}+"] = summarize(sub)
    return out


@torch.no_grad()
def teacher_forced_accuracy(model: Seq2Seq, examples: list, device) -> float:
    """Share of phonemes predicted right when the decoder is fed the true prefix (as in training). Set
    against the free-running phoneme error rate, the gap is exposure bias (THEORY.md §13.2)."""
    model.eval()
    right = total = 0
    for letters, lengths, dec_in, dec_out, _ in WordBatches(examples, 512, shuffle=False):
        logits, _ = model(letters.to(device), lengths, dec_in.to(device))
        dec_out = dec_out.to(device)
        keep = dec_out != PAD
        right += int(((logits.argmax(-1) == dec_out) & keep).sum())
        total += int(keep.sum())
    return right / max(total, 1)


# ----------------------------------------------------------------------------------------------------
# 6. Save and load
# ----------------------------------------------------------------------------------------------------
G2P_CASE = "04_text_gen/g2p"  # these files' tag (utils.training.checkpoint_tag): not a character model's


def g2p_checkpoint_extra(model: Seq2Seq) -> dict:
    """Beside the weights: what the file holds (case and cell), the constructor arguments, and the symbol
    tables (loading checks that they still match)."""
    return {**checkpoint_tag(G2P_CASE, model.hparams["cell"]), "hparams": dict(model.hparams),
            "letters": LETTERS, "phonemes": list(PHONEMES)}


def load_g2p_model(path: Path | str, device: torch.device | str = "cpu", impl: str | None = None,
                   cell: str | None = None, script: str = ""):
    """A saved g2p_lstm/g2p_gru model.pt -> (model in eval mode, checkpoint dict). `impl` overrides the
    saved implementation (a scratch-trained model can run with torch.nn); a file of another case or of the
    other `cell`, or one whose parts do not fit together, is refused in one line."""
    ckpt = load_checkpoint(path, map_location=device, expected=f"a {G2P_CASE} checkpoint")
    check_checkpoint(ckpt, path, case=G2P_CASE, cell=cell,
                     needs=("state_dict", "hparams", "letters", "phonemes"), script=script)
    if ckpt["letters"] != LETTERS or list(ckpt["phonemes"]) != list(PHONEMES):
        raise UserError(f"{path} was trained with other letters or phonemes; retrain the model.")
    with weights_that_fit(path):              # a damaged or hand-edited file: one line naming it
        model = Seq2Seq(**dict(ckpt["hparams"], **({"impl": impl} if impl else {})), device=device).to(device)
        model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


# ----------------------------------------------------------------------------------------------------
# 7. Reporting: pronunciations with attention, the tables, the plots, metrics.json
# ----------------------------------------------------------------------------------------------------
def pronounce(model: Seq2Seq, word: str, device, beam: int = 5) -> dict:
    """One word -> {'word', 'greedy', 'beam' (ARPAbet strings), 'alpha' (T, S) numpy or None}."""
    word = check_word(word)
    letters, lengths = pad_batch([encode_word(word)])
    letters, max_len = letters.to(device), max_output_len(lengths)
    ids, alpha = model.greedy(letters, lengths, max_len)
    greedy = decode_ids(ids[0].tolist())
    beamed = decode_ids(model.beam_search(letters, lengths, max_len, beam)[0][0].tolist())
    steps = len(greedy) + 1                                                    # the phonemes and </s>
    return {"word": word, "greedy": " ".join(decode_phonemes(greedy)),
            "beam": " ".join(decode_phonemes(beamed)),
            "alpha": alpha[0, :steps].float().cpu().numpy() if alpha is not None else None}


def plot_attention(items: list[dict], path: Path, title: str = "") -> Path:
    """Attention heatmaps, letters (columns) x output phonemes (rows), one panel per word: for English
    spelling the bright cells run down a rough diagonal, with jumps where letters are silent ('k' in
    'knight') or one letter makes two phonemes ('x' -> K S)."""
    items = [it for it in items if it["alpha"] is not None]
    cols = min(3, max(len(items), 1))
    rows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, it in zip(axes.flat, items):
        ax.axis("on")
        a = it["alpha"]                                                        # (T, S)
        ax.imshow(a, cmap="viridis", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        ax.set_xticks(range(len(it["word"])), list(it["word"]))
        ax.set_yticks(range(a.shape[0]), it["greedy"].split() + ["</s>"], fontsize=8)
        ax.set_title(it.get("label", it["word"]), fontsize=10)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def in_chinese(name: str) -> str:
    """A run's name in Chinese, for the plots: 'GRU no attention' -> 'GRU 无注意力'."""
    return name.replace("no attention", "无注意力").replace(" attention", " 有注意力")


def plot_wer_by_length(curves: dict[str, dict[str, dict]], path: Path, title: str = "") -> Path:
    """Word error rate per word-length bin, one line per model (e.g. with and without attention)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, bins in curves.items():
        labels = list(bins)
        style = "--" if "no attention" in name else "-"
        ax.plot(labels, [100 * bins[b]["wer"] for b in labels], style, marker="o",
                label=f"{in_chinese(name)} / {name}", color=color_for(name))
    ax.set_xlabel("词长（字母数） / word length (letters)")
    ax.set_ylabel("测试词错误率（%） / test word error rate (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(title)
    return save_figure(fig, path)


def sibling_runs(quick: bool) -> dict[str, Path]:
    """The metrics.json of every pronunciation run so far (LSTM/GRU, with/without attention; --quick runs
    only with --quick ones), so the length plot draws every model measured on the same test words."""
    found = {}
    for cell in ("lstm", "gru"):
        script = Path(__file__).with_name(f"g2p_{cell}.py")
        for sub, label in ((None, "attention"), ("no_attention", "no attention")):
            path = output_dir(script, sub, quick=quick, create=False) / "metrics.json"
            if path.is_file():
                found[f"{cell.upper()} {label}"] = path
    return found


def g2p_report(out: Path, *, config: dict, model: Seq2Seq, data: dict, result: dict, device,
               start_time: float, title: str, beam: int, examples: Sequence[str], n_errors: int = 15) -> dict:
    """Test the kept model greedy and with beam search; error rates overall and by word length; the
    teacher-forced accuracy (exposure bias); the hardest errors; attention heatmaps; metrics.json."""
    test = data["split"]["test"]
    words = list(test)
    t0 = time.time()
    greedy_rows = score_words(test, predict(model, words, device, beam=1, progress="test, greedy"))
    t_greedy = time.time() - t0
    t0 = time.time()
    beam_rows = score_words(test, predict(model, words, device, beam=beam, progress=f"test, beam {beam}"))
    t_beam = time.time() - t0
    greedy, beamed = summarize(greedy_rows), summarize(beam_rows)
    tf_acc = teacher_forced_accuracy(model, data["examples"]["test"], device)
    print_table([{"decoding": "greedy", "test WER": f"{100 * greedy['wer']:.1f}%",
                  "test PER": f"{100 * greedy['per']:.2f}%", "seconds": round(t_greedy, 1)},
                 {"decoding": f"beam {beam}", "test WER": f"{100 * beamed['wer']:.1f}%",
                  "test PER": f"{100 * beamed['per']:.2f}%", "seconds": round(t_beam, 1)}],
                title=f"{title}: {len(words):,} test words (a word is right if it matches any accepted "
                      f"pronunciation)")
    lengths = {"greedy": by_length(greedy_rows), "beam": by_length(beam_rows)}
    print_table([{"letters": k, "words": v["words"], "WER greedy": f"{100 * v['wer']:.1f}%",
                  f"WER beam {beam}": f"{100 * lengths['beam'][k]['wer']:.1f}%",
                  "PER greedy": f"{100 * v['per']:.2f}%"} for k, v in lengths["greedy"].items()],
                title="By word length")
    print(f"exposure bias: fed the true previous phonemes (teacher forcing) the decoder gets "
          f"{100 * tf_acc:.2f}% of test phonemes right; fed its own outputs its phoneme error rate is "
          f"{100 * greedy['per']:.2f}% (greedy)")
    errors = sorted((r for r in beam_rows if r["distance"] > 0),
                    key=lambda r: (-r["distance"] / r["ref_len"], -r["distance"], r["word"]))[:n_errors]
    print_table([{k: r[k] for k in ("word", "predicted", "reference", "distance")} for r in errors],
                title=f"The hardest test words (beam {beam}: most edits per reference phoneme)")
    shown = [pronounce(model, w, device, beam) for w in examples]
    print_table([{k: s[k] for k in ("word", "greedy", "beam")} for s in shown], title="Example words")

    metrics = {"test_wer": beamed["wer"], "test_per": beamed["per"], "test_wer_greedy": greedy["wer"],
               "test_per_greedy": greedy["per"], "test_teacher_forced_phoneme_accuracy": tf_acc,
               "test_words": len(words), "beam": beam, "wer_by_length": lengths,
               "decode_seconds": {"greedy": round(t_greedy, 2), "beam": round(t_beam, 2)},
               "best_epoch": result["best_epoch"], "epochs_run": result["epochs_run"],
               "train_time_s": result["train_time_s"], "parameters": count_parameters(model),
               "train_words": len(data["split"]["train"]),
               "train_pronunciations": len(data["examples"]["train"])}
    plots = ["training_curves.png", "wer_by_length.png"]                  # the curves: the ProgressLog's
    if model.attention:
        plot_attention(shown, out / "attention.png",
                       title=f"{in_chinese(title)}：每个音素在看哪些字母（贪心解码）\n"
                             f"{title}: where each phoneme looked (greedy)")
        plots.append("attention.png")
    save_metrics(out, config=config, metrics=metrics, history=result["history"], start_time=start_time,
                 device=device,
                 extra={"examples": [{k: s[k] for k in ("word", "greedy", "beam")} for s in shown],
                                       "hardest_errors": errors, "plots": plots})
    curves = {}                                          # this run and every sibling run measured so far
    for name, path in sibling_runs(bool(config.get("QUICK"))).items():
        saved = json.loads(path.read_text(encoding="utf-8"))
        curves[name] = saved["metrics"]["wer_by_length"]["beam"]
    plot_wer_by_length(curves, out / "wer_by_length.png",
                       title=f"按词长统计的测试词错误率（束宽 {beam}）\n"
                             f"Test word error rate by word length (beam {beam})")
    return metrics
