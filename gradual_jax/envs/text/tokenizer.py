"""Character-level vocabulary of the text tasks.

The tasks only use lowercase letters and spaces, so a 30-token character vocabulary is
exact and needs no trained tokenizer (the released code used T5's 32k sentencepiece model,
most of which such data never touches). Ids:

====  =======
id    token
====  =======
0     pad
1     bos (the decoder's start token; T5 itself starts from pad, a separate id is clearer)
2     eos
3     space
4-29  ``a`` … ``z``
====  =======

Any other character is an error: the tasks never produce one, and silently mapping it
would hide a bug. The decoder is fed the target shifted right behind bos (:func:`shift_right`),
which the text problem and the model's own tests share.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np

PAD, BOS, EOS, SPACE = 0, 1, 2, 3
LETTER0 = 4  # id of "a"
NUM_LETTERS = 26
VOCAB_SIZE = LETTER0 + NUM_LETTERS  # 30
MAX_INPUT_LEN = 128  # the paper's input truncation, eos included


def _char_id(c: str) -> int:
    if c == " ":
        return SPACE
    if "a" <= c <= "z":
        return LETTER0 + ord(c) - ord("a")
    raise ValueError(f"character {c!r} is not in the vocabulary (lowercase letters and space only)")


def encode(text: str, max_len: int = MAX_INPUT_LEN) -> np.ndarray:
    """Token ids of ``text`` followed by eos, truncated to ``max_len`` and padded with pad.

    Truncation keeps the eos (as Hugging Face tokenizers do): at most ``max_len - 1``
    characters survive.
    """
    if max_len < 1:
        raise ValueError("max_len must be at least 1 (room for eos)")
    ids = [_char_id(c) for c in text[: max_len - 1]] + [EOS]
    out = np.full(max_len, PAD, np.int32)
    out[: len(ids)] = ids
    return out


def decode(ids: Iterable[int]) -> str:
    """Text of a token sequence: stops at the first eos, skips pad and bos."""
    chars = []
    for i in np.asarray(ids).tolist():
        if i == EOS:
            break
        if i in (PAD, BOS):
            continue
        if i == SPACE:
            chars.append(" ")
        elif LETTER0 <= i < VOCAB_SIZE:
            chars.append(chr(ord("a") + i - LETTER0))
        else:
            raise ValueError(f"token id {i} is outside the vocabulary (0..{VOCAB_SIZE - 1})")
    return "".join(chars)


def decode_batch(ids) -> list[str]:
    """:func:`decode` of every row of a ``[N, L]`` array."""
    return [decode(row) for row in np.asarray(ids)]


def shift_right(targets, start_id: int = BOS):
    """Teacher-forcing decoder inputs ``[start, t_0, …, t_{L-2}]`` of targets ``[..., L]``."""
    start = jnp.full(targets.shape[:-1] + (1,), start_id, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)
