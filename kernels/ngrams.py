"""The fused per-batch n-gram loop and the sketch updates it drives.

For each document and each position, the loop hashes the word n-grams of every
order in [min_order, max_order] that start there, and feeds each hash to the
HyperLogLog registers, the Count-Min table and the Misra-Gries table of its
order. N-grams never cross documents. Fusing the updates keeps the n-gram
hashes in registers instead of writing arrays of them to memory.
"""

import numpy as np

from kernels._jit import kernel
from kernels.hashing import avalanche, xxh64_words

_U1 = np.uint64(1)
_U32 = np.uint64(32)
_U64 = np.uint64(64)
_ZERO = np.uint64(0)
_COUNTER_MAX = np.uint32(0xFFFFFFFF)

CM_BLOCK_SLOTS = 16  # 16 uint32 counters: one 64-byte cache line


@kernel
def leading_zeros64(value):
    """Count the leading zero bits of a uint64 (64 for zero)."""
    if value == _ZERO:
        return 64
    count = 0
    if value >> np.uint64(32) == _ZERO:
        count += 32
        value = value << np.uint64(32)
    if value >> np.uint64(48) == _ZERO:
        count += 16
        value = value << np.uint64(16)
    if value >> np.uint64(56) == _ZERO:
        count += 8
        value = value << np.uint64(8)
    if value >> np.uint64(60) == _ZERO:
        count += 4
        value = value << np.uint64(4)
    if value >> np.uint64(62) == _ZERO:
        count += 2
        value = value << np.uint64(2)
    if value >> np.uint64(63) == _ZERO:
        count += 1
    return count


@kernel
def hll_update(registers, precision, hashed):
    """Update HyperLogLog `registers` (uint8, 2**precision) with one 64-bit hash.

    The top `precision` bits choose the register; the register keeps the maximum
    of (leading zeros of the remaining 64 - precision bits) + 1, which is at most
    65 - precision.
    """
    shift = np.uint64(64 - precision)
    index = hashed >> shift
    remainder = hashed << np.uint64(precision)
    rank = leading_zeros64(remainder) + 1
    limit = 65 - precision
    if rank > limit:
        rank = limit
    if registers[index] < rank:
        registers[index] = rank


@kernel
def hll_update_batch(registers, precision, hashes):
    for index in range(hashes.shape[0]):
        hll_update(registers, precision, hashes[index])


@kernel
def countmin_update(table, depth, hashed):
    """Conservative update of a blocked Count-Min table; return the new estimate.

    `table` is (blocks, 16) uint32 and `blocks` is a power of two. The low bits
    of the hash choose a block, one cache line; row r owns the slots
    [r * 16 / depth, (r + 1) * 16 / depth) of every block, and hash bits 32 and
    up choose the slot inside the row's group. Conservative update raises only
    the counters below the new minimum, so estimates never fall below the true
    count. Counters saturate at 2**32 - 1.
    """
    blocks = table.shape[0]
    block = np.int64(hashed & np.uint64(blocks - 1))
    group = CM_BLOCK_SLOTS // depth
    group_bits = 0
    while (1 << group_bits) < group:
        group_bits += 1
    mask = np.uint64(group - 1)

    minimum = _COUNTER_MAX
    for row in range(depth):
        slot = row * group + np.int64((hashed >> np.uint64(32 + row * group_bits)) & mask)
        value = table[block, slot]
        if value < minimum:
            minimum = value
    if minimum == _COUNTER_MAX:
        return minimum
    target = minimum + np.uint32(1)
    for row in range(depth):
        slot = row * group + np.int64((hashed >> np.uint64(32 + row * group_bits)) & mask)
        if table[block, slot] < target:
            table[block, slot] = target
    return target


@kernel
def countmin_query(table, depth, hashed):
    """Return the Count-Min estimate for one hash (an upper bound of the true count)."""
    blocks = table.shape[0]
    block = np.int64(hashed & np.uint64(blocks - 1))
    group = CM_BLOCK_SLOTS // depth
    group_bits = 0
    while (1 << group_bits) < group:
        group_bits += 1
    mask = np.uint64(group - 1)

    minimum = np.uint64(0xFFFFFFFFFFFFFFFF)
    for row in range(depth):
        slot = row * group + np.int64((hashed >> np.uint64(32 + row * group_bits)) & mask)
        value = np.uint64(table[block, slot])
        if value < minimum:
            minimum = value
    return minimum


@kernel
def countmin_query_batch(table, depth, hashes):
    out = np.empty(hashes.shape[0], dtype=np.uint64)
    for index in range(hashes.shape[0]):
        out[index] = countmin_query(table, depth, hashes[index])
    return out


@kernel
def _slot_of(hashed, mask):
    return np.int64(avalanche(hashed ^ np.uint64(0x5851F42D4C957F2D)) & mask)


@kernel
def misra_gries_update(keys, counts, positions, sizes, order_index, capacity, hashed, position):
    """Misra-Gries update of one order's table with one n-gram hash.

    The table is open addressing with linear probing; a slot is used when its
    count is above zero. When the item is new and `capacity` items are already
    kept, every count drops by one and the table is rebuilt without the zeros
    (the new item is dropped too). Then count <= true count <= count + N / (capacity + 1)
    for every item, and every item above N / (capacity + 1) is in the table
    (Misra and Gries, 1982). `positions` records the token index where a new
    item was first seen in the current batch, so its text can be recovered.
    """
    table_size = keys.shape[1]
    mask = np.uint64(table_size - 1)
    slot = _slot_of(hashed, mask)
    while counts[order_index, slot] > 0:
        if keys[order_index, slot] == hashed:
            counts[order_index, slot] += 1
            return
        slot = (slot + 1) & (table_size - 1)

    if sizes[order_index] < capacity:
        keys[order_index, slot] = hashed
        counts[order_index, slot] = 1
        positions[order_index, slot] = position
        sizes[order_index] += 1
        return

    _decrement_all(keys, counts, positions, sizes, order_index)


@kernel
def _decrement_all(keys, counts, positions, sizes, order_index):
    table_size = keys.shape[1]
    mask = np.uint64(table_size - 1)
    kept_keys = np.empty(table_size, dtype=np.uint64)
    kept_counts = np.empty(table_size, dtype=np.int64)
    kept_positions = np.empty(table_size, dtype=np.int64)
    kept = 0
    for slot in range(table_size):
        count = counts[order_index, slot]
        if count > 1:
            kept_keys[kept] = keys[order_index, slot]
            kept_counts[kept] = count - 1
            kept_positions[kept] = positions[order_index, slot]
            kept += 1
        counts[order_index, slot] = 0

    for index in range(kept):
        slot = _slot_of(kept_keys[index], mask)
        while counts[order_index, slot] > 0:
            slot = (slot + 1) & (table_size - 1)
        keys[order_index, slot] = kept_keys[index]
        counts[order_index, slot] = kept_counts[index]
        positions[order_index, slot] = kept_positions[index]
    sizes[order_index] = kept


@kernel
def update_ngram_sketches(
    token_hashes,
    document_offsets,
    min_order,
    max_order,
    seed,
    hll_registers,
    hll_precision,
    countmin_table,
    countmin_depth,
    mg_keys,
    mg_counts,
    mg_positions,
    mg_sizes,
    mg_capacity,
    ngram_totals,
):
    """Feed every n-gram of orders min_order..max_order to the sketches of its order.

    Arrays indexed by order use row `order - min_order`. `ngram_totals` (int64)
    receives the number of n-grams seen per order.
    """
    documents = document_offsets.shape[0] - 1
    for document in range(documents):
        first = document_offsets[document]
        stop = document_offsets[document + 1]
        for position in range(first, stop):
            remaining = stop - position
            for order in range(min_order, max_order + 1):
                if order > remaining:
                    break
                row = order - min_order
                hashed = xxh64_words(token_hashes, position, order, seed)
                ngram_totals[row] += 1
                hll_update(hll_registers[row], hll_precision, hashed)
                if countmin_depth > 0:
                    countmin_update(countmin_table, countmin_depth, hashed)
                if mg_capacity > 0:
                    misra_gries_update(
                        mg_keys, mg_counts, mg_positions, mg_sizes, row, mg_capacity, hashed, position
                    )
