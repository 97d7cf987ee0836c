"""Accuracy of the synthetic-share estimate on the labelled fast-detect-gpt samples.

Run: .venv/bin/python benchmarks/synthetic_share_accuracy.py [--domains xsum,writing,squad]
     [--families chat,open] [--seeds 20] [--shares 0,0.05,0.1,0.25,0.5] [--cross-domain]
     [--calibration-shares 0.15,0.3,0.5]

The data are the fast-detect-gpt samples (Bao et al., ICLR 2024), one JSONL
file per domain with the fields text, generator, domain, doc_group and
shared_prefix_words (directory set by --data). Model rows continue a human
prefix of about 30 words, so the first max(shared_prefix_words, 30) words of
every row, human or model, are dropped.

For each domain, generator family and seed:

1. Source documents (`doc_group`) are split in half by a hash salted with the
   seed into a reference side and a target side, so no source document is on
   both sides.
2. The profile is built from the reference side, human against the family as
   one generator, with `group_field="doc_group"`. The two passes of
   `build_profile` run in this process, shard by shard, without Ray.
3. For each true share a, a target of held-out documents is drawn: one human
   row per target-side source document and the family's target-side rows, as
   many documents as the smaller side allows at share a, at most 500. The
   target is scored with `ShardAccumulator` and estimated with
   `synthetic_share`.

The per-document AUC is that of r between the held-out (calibration) human and
model documents of the reference side.
"""

import argparse
import datetime
import hashlib
import json
import pathlib
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from scanner.accumulator import ShardAccumulator
from scanner.batch import TextBatch
from scanner.plan import build_plan
from scanner.profile import ReferenceProfile
from scanner.profile_build import (
    HUMAN,
    ProfileBuildConfig,
    _merge_counts,
    _merged_sketch,
    _profile_from_counts,
    calibration_arrays,
    calibration_scores,
    is_calibration,
    reference_statistics,
    split_unit_hash,
)
from scanner.scoring import ProfileScorer
from scanner.settings import SketchSettings
from scanner.share import synthetic_share
from scanner.sources import list_objects
from scanner.storage import StorageOptions
from scanner.tokens import tokenize_batch

DEFAULT_DATA = pathlib.Path("/work/shared/corpora/fast-detect-gpt")
FAMILIES = {
    "chat": ("davinci", "gpt-3.5-turbo", "gpt-4"),
    "open": ("gpt2-xl", "opt-2.7b", "gpt-neo-2.7B", "gpt-j-6B", "gpt-neox-20b"),
}
MIN_SKIPPED_WORDS = 30
MAX_TARGET_DOCUMENTS = 500

# Accuracy targets of the in-domain runs.
MAX_ABS_BIAS = 0.02
MAX_RMSE = 0.04
MAX_P95_ERROR = 0.08
MIN_COVERAGE = 0.90


@dataclass(frozen=True)
class Row:
    text: str
    generator: str
    doc_group: str


@dataclass(frozen=True)
class Run:
    """One estimate of one target."""

    setting: str
    family: str
    seed: int
    calibration_share: float
    share: float
    documents: int
    estimate: float
    low: float
    high: float
    plain_mle: float
    warning: bool

    @property
    def error(self) -> float:
        return self.estimate - self.share

    @property
    def covered(self) -> bool:
        return self.low <= self.share <= self.high


def load_rows(path: pathlib.Path) -> list[Row]:
    """Read one domain file and drop the shared prefix span of every row. Rows left empty are skipped."""
    rows = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        skipped = max(int(record["shared_prefix_words"] or 0), MIN_SKIPPED_WORDS)
        text = " ".join(record["text"].split()[skipped:])
        if text:
            rows.append(Row(text, record["generator"], record["doc_group"]))
    return rows


def is_reference_side(doc_group: str, seed: int) -> bool:
    digest = hashlib.sha256(f"split-{seed}:{doc_group}".encode()).digest()
    return digest[0] % 2 == 0


def split_rows(rows: list[Row], family: str, seed: int, one_reference_human: bool = False) -> dict[str, list[Row]]:
    """Return reference human/model rows and target human/model rows.

    The target side keeps one human row per source document, and so does the
    reference side when `one_reference_human` is set. Otherwise the reference
    side keeps every human row.
    """
    generators = FAMILIES[family]
    sides = {"reference_human": [], "reference_model": [], "target_human": [], "target_model": []}
    seen: set[str] = set()
    for row in rows:
        if row.generator != HUMAN and row.generator not in generators:
            continue
        kind = "human" if row.generator == HUMAN else "model"
        side = "reference" if is_reference_side(row.doc_group, seed) else "target"
        keep_one = kind == "human" and (side == "target" or one_reference_human)
        if keep_one:
            # Human rows of one source document are truncations of the same text, so keep the first.
            if row.doc_group in seen:
                continue
            seen.add(row.doc_group)
        sides[f"{side}_{kind}"].append(row)
    return sides


def write_jsonl(path: pathlib.Path, rows: list[Row]) -> str:
    path.write_text("".join(json.dumps({"text": row.text, "doc_group": row.doc_group}) + "\n" for row in rows))
    return str(path)


def shards_of(path: str):
    storage = StorageOptions()
    return build_plan(list_objects([path], storage), storage).shards


def build_profile_in_process(config: ProfileBuildConfig) -> ReferenceProfile:
    """Run both passes of `build_profile` shard by shard in this process, without Ray."""
    shards = {HUMAN: shards_of(config.human[0])}
    shards.update({name: shards_of(sources[0]) for name, sources in config.synthetic.items()})
    statistics = {
        name: _merge_counts([reference_statistics(shard, config) for shard in parts]) for name, parts in shards.items()
    }
    profile = _profile_from_counts(statistics, config)

    # The calibration pass of `_calibrate`, with the shard tasks called directly.
    scorer = ProfileScorer(profile, config.sketch)
    profile_bytes = profile.to_bytes()
    sketches = {}
    for name, parts in shards.items():
        frames = [calibration_scores(shard, config, profile_bytes) for shard in parts]
        sketches[name] = _merged_sketch(frames, scorer.new_sketch())
        if sketches[name].documents == 0:
            raise ValueError(f"reference set {name!r} has no held-out documents for calibration")
    profile.calibration = calibration_arrays(sketches, list(config.synthetic))
    return profile


def score_texts(scorer: ProfileScorer, texts: list[str], settings: SketchSettings) -> np.ndarray:
    tokens = tokenize_batch(TextBatch.from_arrow(pa.array(texts, type=pa.large_string())), settings)
    r, _, _ = scorer.score(tokens)
    return r.max(axis=1)


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Return the Mann-Whitney AUC, P(positive > negative) with ties counted as one half."""
    values = np.concatenate([negatives, positives])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    positive_ranks = ranks[negatives.size :].sum()
    return float((positive_ranks - positives.size * (positives.size + 1) / 2.0) / (positives.size * negatives.size))


def calibration_auc(profile: ReferenceProfile, config: ProfileBuildConfig, sides: dict[str, list[Row]]) -> float:
    """AUC of r between the held-out human and model documents of the reference side."""
    scorer = ProfileScorer(profile, config.sketch)

    def held_out(rows: list[Row]) -> list[str]:
        return [
            row.text
            for row in rows
            if is_calibration(split_unit_hash(row.doc_group, config.split_seed), config.calibration_share)
        ]

    human = score_texts(scorer, held_out(sides["reference_human"]), config.sketch)
    model = score_texts(scorer, held_out(sides["reference_model"]), config.sketch)
    return auc(human, model)


def target_sizes(share: float, humans: int, models: int) -> tuple[int, int]:
    """Return (human, model) document counts of the largest target at `share`, at most 500 documents."""
    total = MAX_TARGET_DOCUMENTS
    if share < 1.0:
        total = min(total, int(humans / (1.0 - share)))
    if share > 0.0:
        total = min(total, int(models / share))
    model_count = round(share * total)
    return total - model_count, model_count


def estimate_target(
    profile: ReferenceProfile, scorer: ProfileScorer, settings: SketchSettings, texts: list[str]
) -> tuple[float, float, float, float, bool]:
    accumulator = ShardAccumulator(settings, "target", scorer)
    accumulator.add_texts(pa.array(texts, type=pa.large_string()))
    result = synthetic_share(accumulator.finish().likelihood, profile, scorer.digest)
    return result.estimate, result.ci95[0], result.ci95[1], result.plain_mle, result.fit.warning is not None


def run_setting(
    setting: str,
    reference_rows: list[Row],
    target_rows: list[Row],
    family: str,
    seed: int,
    shares: list[float],
    calibration_share: float,
    workdir: pathlib.Path,
    log,
    one_reference_human: bool = False,
) -> tuple[list[Run], float]:
    """Build one profile, estimate the targets at every share and return the runs and the calibration AUC."""
    reference_sides = split_rows(reference_rows, family, seed, one_reference_human)
    target_sides = split_rows(target_rows, family, seed)
    config = ProfileBuildConfig(
        human=[write_jsonl(workdir / "reference-human.jsonl", reference_sides["reference_human"])],
        synthetic={family: [write_jsonl(workdir / "reference-model.jsonl", reference_sides["reference_model"])]},
        out=str(workdir / "unused.profile"),
        group_field="doc_group",
        calibration_share=calibration_share,
        split_seed=seed,
    )
    profile = build_profile_in_process(config)
    area = calibration_auc(profile, config, reference_sides)
    scorer = ProfileScorer(profile, config.sketch)

    runs = []
    humans, models = target_sides["target_human"], target_sides["target_model"]
    for share in shares:
        human_count, model_count = target_sizes(share, len(humans), len(models))
        sampler = random.Random(f"{setting}-{family}-{seed}-{share}")
        texts = [row.text for row in sampler.sample(humans, human_count) + sampler.sample(models, model_count)]
        estimate, low, high, mle, warning = estimate_target(profile, scorer, config.sketch, texts)
        true_share = model_count / len(texts)
        runs.append(
            Run(setting, family, seed, calibration_share, share, len(texts), estimate, low, high, mle, warning)
        )
        log(
            f"{setting} {family} seed={seed} cal={calibration_share} share={share} (exact {true_share:.4f}) "
            f"target={len(texts)} ({human_count} human + {model_count} model) estimate={estimate:.4f} "
            f"ci=[{low:.3f}, {high:.3f}] plain_mle={mle:.4f} warning={warning} auc={area:.3f}"
        )
    return runs, area


def summarize(runs: list[Run]) -> dict:
    errors = np.array([run.estimate - run.share for run in runs])
    return {
        "runs": len(runs),
        "documents": f"{min(run.documents for run in runs)}-{max(run.documents for run in runs)}",
        "bias": float(errors.mean()),
        "max_error": float(np.abs(errors).max()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "p95_error": float(np.quantile(np.abs(errors), 0.95)),
        "coverage": float(np.mean([run.covered for run in runs])),
        "warning_rate": float(np.mean([run.warning for run in runs])),
        "plain_mle_bias": float(np.mean([run.plain_mle - run.share for run in runs])),
    }


def table(runs: list[Run], aucs: dict[tuple, list[float]], key_fields: tuple[str, ...]) -> str:
    """Return a markdown table with one row per key and share."""
    header = [*key_fields, "share", "runs", "target docs", "bias", "max abs err", "RMSE", "p95 abs err",
              "coverage", "fit warning", "plain MLE bias", "AUC (mean, min)"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    keys = sorted({tuple(getattr(run, field) for field in key_fields) for run in runs}, key=str)
    for key in keys:
        for share in sorted({run.share for run in runs}):
            selected = [
                run for run in runs if tuple(getattr(run, field) for field in key_fields) == key and run.share == share
            ]
            if not selected:
                continue
            summary = summarize(selected)
            areas = aucs.get(key, [])
            area = f"{np.mean(areas):.3f}, {np.min(areas):.3f}" if areas else "-"
            cells = [*map(str, key), f"{share:g}", str(summary["runs"]), summary["documents"],
                     f"{summary['bias']:+.4f}", f"{summary['max_error']:.4f}", f"{summary['rmse']:.4f}",
                     f"{summary['p95_error']:.4f}", f"{summary['coverage']:.0%}", f"{summary['warning_rate']:.0%}",
                     f"{summary['plain_mle_bias']:+.3f}", area]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(runs: list[Run], key_fields: tuple[str, ...]) -> list[str]:
    """Return one line per key saying which in-domain targets were met."""
    lines = []
    keys = sorted({tuple(getattr(run, field) for field in key_fields) for run in runs}, key=str)
    for key in keys:
        selected = [run for run in runs if tuple(getattr(run, field) for field in key_fields) == key]
        misses = []
        for share in sorted({run.share for run in selected}):
            summary = summarize([run for run in selected if run.share == share])
            if abs(summary["bias"]) > MAX_ABS_BIAS:
                misses.append(f"|bias| {abs(summary['bias']):.3f} > {MAX_ABS_BIAS} at share {share:g}")
            if summary["rmse"] > MAX_RMSE:
                misses.append(f"RMSE {summary['rmse']:.3f} > {MAX_RMSE} at share {share:g}")
            if summary["p95_error"] > MAX_P95_ERROR:
                misses.append(f"p95 |error| {summary['p95_error']:.3f} > {MAX_P95_ERROR} at share {share:g}")
            if summary["coverage"] < MIN_COVERAGE:
                misses.append(f"coverage {summary['coverage']:.0%} < {MIN_COVERAGE:.0%} at share {share:g}")
        name = " / ".join(map(str, key))
        lines.append(f"- {name}: " + ("all targets met." if not misses else "**missed**: " + "; ".join(misses) + "."))
    return lines


def parse_list(text: str, kind=str) -> list:
    return [kind(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA, help="directory of DOMAIN.jsonl files")
    parser.add_argument("--domains", default="xsum,writing,squad", help="comma-separated domains")
    parser.add_argument("--families", default="chat,open", help="comma-separated generator families: chat, open")
    parser.add_argument("--seeds", type=int, default=20, help="number of split seeds, counted from --first-seed")
    parser.add_argument("--first-seed", type=int, default=0, help="first split seed")
    parser.add_argument("--shares", default="0,0.05,0.1,0.25,0.5", help="comma-separated true synthetic shares, each in [0, 1)")
    parser.add_argument("--calibration-share", type=float, default=0.3, help="share of reference source documents held out for calibration")
    parser.add_argument("--cross-domain", action="store_true", help="also run profile xsum -> target writing and the reverse (open family)")
    parser.add_argument("--cross-domain-only", action="store_true", help="run only the cross-domain setting")
    parser.add_argument("--calibration-shares", default="", help="comma-separated calibration shares for the calibration-size sweep (xsum, open family)")
    parser.add_argument("--sweep-seeds", type=int, default=5, help="split seeds of the calibration-size sweep")
    parser.add_argument("--one-reference-human", action="store_true", help="keep one human row per source document on the reference side too, as a diagnostic. By default the reference side keeps every human row")
    parser.add_argument("--jsonl", type=pathlib.Path, help="also write every run as a JSON line to this file")
    args = parser.parse_args()  # fmt: skip

    domains = parse_list(args.domains)
    families = parse_list(args.families)
    unknown = [family for family in families if family not in FAMILIES]
    if unknown:
        parser.error(f"unknown family {unknown[0]!r}: use chat or open")
    shares = parse_list(args.shares, float)
    if any(not 0.0 <= share < 1.0 for share in shares):
        parser.error(f"invalid --shares {args.shares!r}: each share must be in [0, 1)")
    seeds = range(args.first_seed, args.first_seed + args.seeds)

    rows_of = {}

    def rows(domain: str) -> list[Row]:
        if domain not in rows_of:
            path = args.data / f"{domain}.jsonl"
            if not path.exists():
                parser.error(f"domain file {path} not found: check --data and --domains")
            rows_of[domain] = load_rows(path)
        return rows_of[domain]

    jsonl = args.jsonl.open("a") if args.jsonl else None

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def record(runs: list[Run]) -> None:
        if jsonl:
            for run in runs:
                jsonl.write(json.dumps(run.__dict__) + "\n")
            jsonl.flush()

    started = time.perf_counter()
    print(
        f"# synthetic share accuracy, {datetime.date.today()}, Python {platform.python_version()}, "
        f"seeds {args.first_seed}-{args.first_seed + args.seeds - 1}, one reference human row per document: "
        f"{args.one_reference_human}"
    )
    with tempfile.TemporaryDirectory(prefix="share-accuracy-") as directory:
        workdir = pathlib.Path(directory)

        if not args.cross_domain_only:
            in_domain, aucs = [], {}
            for domain in domains:
                for family in families:
                    if family == "chat" and not any(row.generator in FAMILIES["chat"] for row in rows(domain)):
                        log(f"{domain} has no {family} rows: skipped")
                        continue
                    for seed in seeds:
                        runs, area = run_setting(
                            domain, rows(domain), rows(domain), family, seed, shares, args.calibration_share, workdir, log,
                            args.one_reference_human,
                        )
                        record(runs)
                        in_domain.extend(runs)
                        aucs.setdefault((domain, family), []).append(area)
            print("\n## In domain\n")
            print(table(in_domain, aucs, ("setting", "family")))
            print()
            print("\n".join(verdict(in_domain, ("setting", "family"))))

        if args.cross_domain or args.cross_domain_only:
            cross, aucs = [], {}
            for source, target in (("xsum", "writing"), ("writing", "xsum")):
                for seed in seeds:
                    setting = f"{source}->{target}"
                    runs, area = run_setting(
                        setting, rows(source), rows(target), "open", seed, shares, args.calibration_share, workdir, log,
                        args.one_reference_human,
                    )
                    record(runs)
                    cross.extend(runs)
                    aucs.setdefault((setting, "open"), []).append(area)
            print("\n## Cross domain (profile from the first domain, target from the second)\n")
            print(table(cross, aucs, ("setting", "family")))

        if args.calibration_shares:
            sweep, aucs = [], {}
            for calibration_share in parse_list(args.calibration_shares, float):
                for seed in range(args.first_seed, args.first_seed + args.sweep_seeds):
                    runs, area = run_setting(
                        "xsum", rows("xsum"), rows("xsum"), "open", seed, shares, calibration_share, workdir, log,
                        args.one_reference_human,
                    )
                    record(runs)
                    sweep.extend(runs)
                    aucs.setdefault(("xsum", "open", calibration_share), []).append(area)
            print("\n## Calibration size (xsum, open family)\n")
            print(table(sweep, aucs, ("setting", "family", "calibration_share")))

    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if jsonl:
        jsonl.close()


if __name__ == "__main__":
    main()
