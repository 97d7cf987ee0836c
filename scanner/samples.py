"""A synthetic English-like corpus that the project generates itself.

The demo and the benchmarks need text without a download. This module draws
documents from a first-order Markov chain over words, trained on a short
embedded passage and mixed with a Zipf-distributed filler vocabulary, so the
unigram and bigram statistics look like prose and longer n-grams keep growing
in number as real text does. Output is deterministic for a given seed.
"""

import gzip
import json
import pathlib

import numpy as np

from kernels._jit import kernel

_PASSAGE = """
The history of the city begins in the early years of the river trade, when small
boats carried grain, timber and cloth between the northern valleys and the coast.
Merchants built warehouses along the banks, and the town that grew around them
became known for its markets and its bridges. In the following century the port
was expanded, new roads were laid across the hills, and the population doubled
within a generation. Schools and libraries were founded by the guilds, and the
first newspaper was printed in a workshop near the cathedral. Many of the old
buildings still stand today, although the harbour has moved further down the
river and most of the trade now passes through the railway station. Visitors
often walk along the embankment in the evening, when the lights of the bridges
are reflected in the water and the cafes fill with students and families. The
university, which was opened more than two hundred years ago, remains one of the
largest employers in the region, and its research in medicine, engineering and
economics is known around the world. Local government has recently announced a
plan to restore the historic centre, improve public transport and build new
homes for young people who want to live and work in the city.
"""


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list("etaoinshrdlucmfwypvbgkqjxz"))
    weights = np.linspace(2.0, 0.1, letters.size)
    weights /= weights.sum()
    words = set()
    while len(words) < size:
        length = int(rng.integers(2, 11))
        words.add("".join(rng.choice(letters, length, p=weights)))
    return sorted(words)


@kernel
def _walk(passage, successor_offsets, successors, filler_start, filler_cdf, uniforms, picks, count):
    """Return `count` word indices: 30% Zipf filler words, 70% Markov steps along the passage."""
    out = np.empty(count, dtype=np.int64)
    current = passage[np.int64(picks[0] * passage.shape[0])]
    for position in range(count):
        if uniforms[position] < 0.3:
            current = filler_start + np.searchsorted(filler_cdf, picks[position])
        else:
            first = successor_offsets[current]
            stop = successor_offsets[current + 1]
            if stop == first:
                current = passage[np.int64(picks[position] * passage.shape[0])]
            else:
                current = successors[first + np.int64(picks[position] * (stop - first))]
        out[position] = current
    return out


class MarkovCorpus:
    """Draws documents of English-like text; deterministic for a seed."""

    def __init__(self, seed: int = 0, filler_words: int = 50_000):
        self.rng = np.random.default_rng(seed)
        passage = _PASSAGE.replace(",", " ,").replace(".", " .").split()
        filler = _vocabulary(self.rng, filler_words)
        self.rng.shuffle(filler)
        self.words = np.array(sorted(set(passage)) + filler, dtype=object)
        index = {word: position for position, word in enumerate(self.words)}
        self.passage = np.array([index[word] for word in passage], dtype=np.int64)
        self.filler_start = len(self.words) - len(filler)
        ranks = np.arange(1, len(filler) + 1, dtype=np.float64)
        weights = ranks**-1.1
        self.filler_cdf = np.cumsum(weights / weights.sum())

        pairs = sorted(zip(self.passage[:-1].tolist(), self.passage[1:].tolist()))
        self.successors = np.array([following for _, following in pairs], dtype=np.int64)
        counts = np.bincount([current for current, _ in pairs], minlength=len(self.words))
        self.successor_offsets = np.zeros(len(self.words) + 1, dtype=np.int64)
        self.successor_offsets[1:] = np.cumsum(counts)

    def _words(self, count: int) -> np.ndarray:
        uniforms = self.rng.random(count)
        picks = self.rng.random(count)
        return _walk(
            self.passage, self.successor_offsets, self.successors, self.filler_start,
            self.filler_cdf, uniforms, picks, count,
        )

    def documents(self, count: int, mean_words: int = 400) -> list[str]:
        lengths = np.maximum(5, self.rng.poisson(mean_words, count))
        words = self.words[self._words(int(lengths.sum()))]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        out = []
        for document in range(count):
            text = " ".join(words[bounds[document] : bounds[document + 1]])
            text = text.replace(" ,", ",").replace(" .", ".")
            out.append(text[:1].upper() + text[1:])
        return out


def write_jsonl_gz(path: pathlib.Path, documents: list[str], first_id: int = 0) -> None:
    """Write documents as gzip JSONL with `id`, `text` and `url` fields."""
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as handle:
        for offset, text in enumerate(documents):
            number = first_id + offset
            record = {"id": number, "text": text, "url": f"https://site{number % 37}.example.org/page/{number}"}
            handle.write(json.dumps(record) + "\n")
