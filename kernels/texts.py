"""Gathering the text of n-grams from the case-folded batch bytes."""

import numpy as np

from kernels._jit import kernel


@kernel
def gather_ngram_texts(folded, token_starts, token_lengths, first_tokens, orders):
    """Join the tokens of each n-gram with single spaces.

    N-gram i starts at token `first_tokens[i]` and has `orders[i]` tokens.
    Returns (bytes uint8, offsets int64) in the layout of an Arrow string array.
    """
    count = first_tokens.shape[0]
    offsets = np.zeros(count + 1, dtype=np.int64)
    for index in range(count):
        size = orders[index] - 1
        for token in range(first_tokens[index], first_tokens[index] + orders[index]):
            size += token_lengths[token]
        offsets[index + 1] = offsets[index] + size
    out = np.empty(offsets[count], dtype=np.uint8)
    for index in range(count):
        position = offsets[index]
        for token in range(first_tokens[index], first_tokens[index] + orders[index]):
            if token != first_tokens[index]:
                out[position] = 32
                position += 1
            start = token_starts[token]
            for byte in range(token_lengths[token]):
                out[position] = folded[start + byte]
                position += 1
    return out, offsets
