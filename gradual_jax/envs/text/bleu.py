"""Corpus BLEU over whitespace-split words (BLEU-2 for the paper), in plain Python.

Corpus BLEU (Papineni et al., 2002) sums the clipped n-gram matches and the n-gram counts of
all sentences before dividing, and applies one brevity penalty to the summed lengths:
``BP · exp(Σ_n w_n log p_n)`` with ``BP = exp(1 - r/c)`` when the total hypothesis length c is
shorter than the total reference length r. The paper's BLEU-2 has weights (½, ½). One
reference per hypothesis.

Libraries agree on this and differ only at the edges, so two conventions are offered:

* ``"nltk"`` (default; the released code imported ``nltk.translate.bleu_score.corpus_bleu``):
  ``corpus_bleu([[ref.split()] ...], [hyp.split() ...], weights=(0.5, 0.5))`` without a
  smoothing function. Each sentence contributes at least 1 to every n-gram count (nltk's
  ``max(1, ·)``, which also counts empty hypotheses); the score is 0 when no unigram matches;
  an order with zero matches gets precision ``sys.float_info.min`` (so the score is ~1e-154,
  not exactly 0); BP is 0 for an empty corpus of hypotheses.
* ``"sacrebleu"``: ``BLEU(max_ngram_order=2, smooth_method="none", tokenize="none")``, divided by
  100. Counts are raw (an empty hypothesis contributes nothing but its reference length);
  the score is 0 when any order has no match or no n-gram at all.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence

import numpy as np

from gradual_jax.envs.text import tokenizer as tok

CONVENTIONS = ("nltk", "sacrebleu")


def _ngrams(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def sentence_stats(hypothesis: str, reference: str, max_order: int = 2):
    """Clipped matches and hypothesis n-gram counts per order, and the two lengths."""
    hyp, ref = hypothesis.split(), reference.split()
    matches, counts = [], []
    for n in range(1, max_order + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        matches.append(sum(min(c, r[g]) for g, c in h.items()))
        counts.append(sum(h.values()))
    return matches, counts, len(hyp), len(ref)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], *, max_order: int = 2,
                convention: str = "nltk") -> float:
    """Corpus BLEU in [0, 1] with uniform weights ``1/max_order`` (BLEU-2 by default)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention={convention!r}; choose one of {CONVENTIONS}")
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    nltk = convention == "nltk"
    matches, totals = np.zeros(max_order, np.int64), np.zeros(max_order, np.int64)
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        m, c, h, r = sentence_stats(hyp, ref, max_order)
        matches += m
        totals += [max(1, x) for x in c] if nltk else c
        hyp_len, ref_len = hyp_len + h, ref_len + r

    if hyp_len >= ref_len:
        bp = 1.0
    else:
        bp = math.exp(1.0 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    if matches[0] == 0:
        return 0.0
    if nltk:
        precisions = [m / t if m > 0 else sys.float_info.min for m, t in zip(matches, totals)]
    else:
        if (matches == 0).any() or (totals == 0).any():
            return 0.0
        precisions = [m / t for m, t in zip(matches, totals)]
    return bp * math.exp(math.fsum(math.log(p) / max_order for p in precisions))


def corpus_bleu2(hypotheses: Sequence[str], references: Sequence[str], *, convention: str = "nltk") -> float:
    """The paper's metric: corpus BLEU with weights (½, ½)."""
    return corpus_bleu(hypotheses, references, max_order=2, convention=convention)


def bleu2_from_ids(hypothesis_ids, reference_ids, *, convention: str = "nltk") -> float:
    """BLEU-2 of ``[N, L]`` token arrays (decoded with :func:`tokenizer.decode`: up to eos)."""
    return corpus_bleu2(tok.decode_batch(np.asarray(hypothesis_ids)), tok.decode_batch(np.asarray(reference_ids)),
                        convention=convention)
