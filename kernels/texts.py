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


@kernel(leaf=True)
def _text_less(left_data, left_start, left_end, right_data, right_start, right_end):
    """Return True when the left text sorts before the right one byte by byte (UTF-8: by code point)."""
    length = min(left_end - left_start, right_end - right_start)
    for index in range(length):
        a, b = left_data[left_start + index], right_data[right_start + index]
        if a != b:
            return a < b
    return left_end - left_start < right_end - right_start


@kernel
def union_keyed_texts(first_keys, first_offsets, first_data, second_keys, second_offsets, second_data):
    """Merge two sets of texts keyed by strictly ascending hashes into one.

    Text i of a set is data[offsets[i]:offsets[i + 1]]. A key in both sets keeps
    the smaller of its two texts. Returns (keys uint64, offsets int64, data uint8)
    in the same layout, keys ascending.
    """
    first_count, second_count = first_keys.shape[0], second_keys.shape[0]
    keys = np.empty(first_count + second_count, dtype=np.uint64)
    offsets = np.zeros(first_count + second_count + 1, dtype=np.int64)
    data = np.empty(first_data.shape[0] + second_data.shape[0], dtype=np.uint8)
    first, second, written = 0, 0, 0
    while first < first_count or second < second_count:
        equal = False
        if first == first_count:
            use_second = True
        elif second == second_count:
            use_second = False
        else:
            equal = first_keys[first] == second_keys[second]
            use_second = second_keys[second] < first_keys[first] or (
                equal
                and _text_less(
                    second_data, second_offsets[second], second_offsets[second + 1],
                    first_data, first_offsets[first], first_offsets[first + 1],
                )
            )
        position = offsets[written]
        if use_second:
            keys[written] = second_keys[second]
            start, end = second_offsets[second], second_offsets[second + 1]
            data[position : position + end - start] = second_data[start:end]
        else:
            keys[written] = first_keys[first]
            start, end = first_offsets[first], first_offsets[first + 1]
            data[position : position + end - start] = first_data[start:end]
        offsets[written + 1] = position + end - start
        written += 1
        if equal or not use_second:
            first += 1
        if equal or use_second:
            second += 1
    return keys[:written].copy(), offsets[: written + 1].copy(), data[: offsets[written]].copy()
