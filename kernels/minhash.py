"""MinHash signatures of documents over word-shingle sets.

A document's shingles are its word n-grams of order `shingle_order` (a document
shorter than that has one shingle: all its tokens). Signatures use one
permutation hashing with optimal densification (Li, Owen and Zhang, NeurIPS
2012; Shrivastava, ICML 2017): each shingle is hashed once, as
avalanche(shingle_hash XOR salt_0), the XXH64 finalizer of a salted value; the
top 32 bits of that hash choose one of k bins and the bin keeps the smallest
hash it receives. A bin that no shingle reached copies the value of the first
filled bin along a fixed pseudo-random probe sequence of its own, drawn from
salt_i, so two documents probe alike. Two documents agree in one position with
probability equal to the Jaccard similarity of their shingle sets, as with k
independent hash functions (Broder, 1997), so the share of equal positions
estimates it, with standard error close to sqrt(J (1 - J) / k). The cost is
one hash per shingle instead of k; `tests/test_minhash_vocabulary.py` checks
the estimate against exact Jaccard similarities.
"""

import numpy as np

from kernels._jit import kernel
from kernels.features import count_distinct
from kernels.hashing import avalanche, ngram_hash, xxh64_words

EMPTY_SIGNATURE_VALUE = np.uint64(0xFFFFFFFFFFFFFFFF)
_U32 = np.uint64(32)


@kernel(leaf=True)
def _bin_of(hashed, bins):
    """Map the top 32 bits of a hash to one of `bins` bins without a division."""
    return np.int64(((hashed >> _U32) * np.uint64(bins)) >> _U32)


@kernel
def minhash_signatures(token_hashes, document_offsets, shingle_order, salts, seed):
    """Return a (documents, len(salts)) uint64 array of MinHash signatures.

    A document without tokens gets all positions set to 2**64 - 1.
    """
    documents = document_offsets.shape[0] - 1
    bins = salts.shape[0]
    signatures = np.full((documents, bins), EMPTY_SIGNATURE_VALUE, dtype=np.uint64)
    filled = np.zeros(bins, dtype=np.uint8)
    salt = salts[0]
    for document in range(documents):
        first = document_offsets[document]
        tokens = document_offsets[document + 1] - first
        if tokens == 0:
            continue
        order = shingle_order if tokens >= shingle_order else tokens
        row = signatures[document]
        filled[:] = 0
        for start in range(first, first + tokens - order + 1):
            value = avalanche(ngram_hash(token_hashes, start, order, seed) ^ salt)
            slot = _bin_of(value, bins)
            filled[slot] = 1
            if value < row[slot]:
                row[slot] = value

        # Optimal densification: an empty bin takes the value of the first filled bin
        # on its own probe sequence. Probes depend only on the bin and the attempt.
        for slot in range(bins):
            if filled[slot]:
                continue
            attempt = np.uint64(0)
            while True:
                source = _bin_of(avalanche(salts[slot] + attempt), bins)
                if filled[source]:
                    row[slot] = row[source]
                    break
                attempt += np.uint64(1)
    return signatures


@kernel
def shingle_minima(token_hashes, document_offsets, shingle_order, salt, seed):
    """Return each document's minimum of (shingle hash ^ `salt`), or 2**64 - 1 without tokens.

    This is the sampling key of the diversity sketch. `kernels.ngrams` computes the
    same value in its pass; this function checks it in tests.
    """
    documents = document_offsets.shape[0] - 1
    out = np.full(documents, EMPTY_SIGNATURE_VALUE, dtype=np.uint64)
    for document in range(documents):
        first = document_offsets[document]
        tokens = document_offsets[document + 1] - first
        if tokens == 0:
            continue
        order = shingle_order if tokens >= shingle_order else tokens
        for start in range(first, first + tokens - order + 1):
            out[document] = min(out[document], ngram_hash(token_hashes, start, order, seed) ^ salt)
    return out


@kernel
def distinct_shingles(token_hashes, document_offsets, documents, shingle_order, seed):
    """Return the number of distinct shingles (as `minhash_signatures` forms them) of each listed document."""
    out = np.zeros(documents.shape[0], dtype=np.int64)

    longest = 0
    for index in range(documents.shape[0]):
        longest = max(longest, document_offsets[documents[index] + 1] - document_offsets[documents[index]])
    size = 16
    while size < 2 * longest:
        size *= 2
    shingles = np.empty(max(longest, 1), dtype=np.uint64)
    table_keys = np.zeros(size, dtype=np.uint64)
    table_counts = np.zeros(size, dtype=np.int64)
    used_slots = np.empty(max(longest, 1), dtype=np.int64)

    for index in range(documents.shape[0]):
        document = documents[index]
        first = document_offsets[document]
        tokens = document_offsets[document + 1] - first
        if tokens == 0:
            continue
        order = shingle_order if tokens >= shingle_order else tokens
        count = tokens - order + 1

        for start in range(count):
            shingles[start] = ngram_hash(token_hashes, first + start, order, seed)
        mask = 15
        while mask + 1 < 2 * count:
            mask = 2 * mask + 1
        distinct = count_distinct(shingles, 0, count, table_keys, table_counts, used_slots, mask)
        for slot in range(distinct):
            table_counts[used_slots[slot]] = 0
        out[index] = distinct
    return out


@kernel
def band_hashes(signatures, bands, rows, seed):
    """Return a (documents, bands) uint64 array: band b hashes signature positions [b * rows, (b + 1) * rows).

    Locality-sensitive hashing by banding (Leskovec, Rajaraman and Ullman,
    "Mining of Massive Datasets", chapter 3): two documents of Jaccard
    similarity s share some band with probability 1 - (1 - s**rows)**bands.
    """
    documents = signatures.shape[0]
    out = np.empty((documents, bands), dtype=np.uint64)
    for document in range(documents):
        row = signatures[document]
        for band in range(bands):
            out[document, band] = xxh64_words(row, band * rows, rows, seed)
    return out


@kernel
def near_duplicate_flags(signatures, query_bands, has_tokens, band_keys, band_documents, registered, min_matches):
    """Flag each query document whose signature agrees with a registered one in >= `min_matches` positions.

    Candidates are the registered documents that share a band hash with the
    query: `band_keys[b]` is sorted and `band_documents[b]` gives the registered
    document of each key. Every candidate is checked against its full signature,
    so a band collision alone never flags a document. Documents without tokens
    are never flagged.
    """
    documents = signatures.shape[0]
    bands = query_bands.shape[1]
    functions = signatures.shape[1]
    flags = np.zeros(documents, dtype=np.bool_)
    for document in range(documents):
        if not has_tokens[document]:
            continue
        for band in range(bands):
            keys = band_keys[band]
            key = query_bands[document, band]
            position = np.searchsorted(keys, key)
            while position < keys.shape[0] and keys[position] == key:
                candidate = band_documents[band, position]
                matches = 0
                for function in range(functions):
                    if signatures[document, function] == registered[candidate, function]:
                        matches += 1
                if matches >= min_matches:
                    flags[document] = True
                    break
                position += 1
            if flags[document]:
                break
    return flags
