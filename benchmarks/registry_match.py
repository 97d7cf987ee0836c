"""Single-core cost of matching a scan against a registry, next to the rest of the shard kernel.

Run: .venv/bin/python benchmarks/registry_match.py [--megabytes 32] [--registered 5000]

It registers `--registered` English-like documents from `scanner.samples.MarkovCorpus`
(seed 1) with the default build settings on an embedded local Ray, then feeds
`--megabytes` of other documents (seed 0) in 8 MB batches to a `ShardAccumulator`
without and with the registry. Each measurement runs after a warm-up batch, so
compilation is excluded.
"""

import argparse
import pathlib
import tempfile
import time

import pyarrow as pa

from scanner.accumulator import ShardAccumulator
from scanner.registry import RegistryBuildConfig, RegistryMatcher, build_dataset, load_registry, save_dataset
from scanner.samples import MarkovCorpus, write_jsonl_gz
from scanner.settings import SketchSettings

BATCH_DOCUMENTS = 4_000


def batches(megabytes: int) -> list[pa.Array]:
    generator = MarkovCorpus(seed=0)
    result, total = [], 0
    while total < megabytes * 1_000_000:
        texts = generator.documents(BATCH_DOCUMENTS)
        total += sum(len(text) for text in texts)
        result.append(pa.array(texts, type=pa.large_string()))
    return result


def throughput(data: list[pa.Array], matcher: RegistryMatcher | None) -> float:
    """Return megabytes of text per second of one accumulator over `data`."""
    ShardAccumulator(SketchSettings(), "warm-up", None, matcher).add_texts(data[0])
    accumulator = ShardAccumulator(SketchSettings(), "bench", None, matcher)
    started = time.perf_counter()
    for batch in data:
        accumulator.add_texts(batch)
    seconds = time.perf_counter() - started
    return sum(batch.nbytes for batch in data) / 1e6 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--registered", type=int, default=5_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        root = pathlib.Path(directory)
        (root / "registered").mkdir()
        write_jsonl_gz(root / "registered" / "part.jsonl.gz", MarkovCorpus(seed=1).documents(args.registered))
        config = RegistryBuildConfig(
            name="registered", sources=[str(root / "registered")], out=str(root / "registry"), num_workers=1
        )
        save_dataset(build_dataset(config), config)
        matcher = RegistryMatcher(load_registry(str(root / "registry")), 0.8)

        data = batches(args.megabytes)
        plain = throughput(data, None)
        matched = throughput(data, matcher)
    print(f"{args.megabytes} MB of text, {args.registered} registered documents, one core")
    print(f"  scan without registry: {plain:6.1f} MB/s")
    print(f"  scan with registry:    {matched:6.1f} MB/s")


if __name__ == "__main__":
    main()
