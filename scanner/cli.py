"""The `corpus-scanner` command line: scan, plan, demo, profile, registry, audit, submit, jobs and monitor.

Exit codes:
    0  success.
    1  the scan failed with an unexpected error, which is logged with its traceback.
    2  invalid arguments or configuration. The message names the value and the fix.
    3  the scan finished, but shards failed or skipped records exceed --max-errors.
       result.json is still written and lists the problems.
    4  monitor run-once only: at least one alert rule fired.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import socket
import sys
import tempfile
from collections.abc import Sequence

from pydantic import ValidationError

from scanner.bundle import BundleMismatchError
from scanner.config import ScanConfig
from scanner.demo import (
    DEFAULT_DOCUMENTS,
    DEFAULT_NUMBER_DOCUMENTS,
    describe_number_corpus,
    format_number_shares,
    number_profile_config,
    write_demo_corpus,
    write_number_corpus,
)
from scanner.jobs import JobsError, add_job_commands
from scanner.packing import TASKS_PER_WORKER
from scanner.plan import build_plan
from scanner.result import ScanResult
from scanner.settings import parse_orders
from scanner.sources import SourceError, list_objects
from scanner.storage import StorageOptions, UnwritableLocationError, check_local_directory_writable, redact_url

logger = logging.getLogger("scanner.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130

PROGRAM = "corpus-scanner"
MIB = 1 << 20

# Command-line option for each configuration field, so validation errors name what the user typed.
_OPTION_FOR_FIELD = {
    ("sources",): "SOURCE",
    ("out",): "--out",
    ("read", "format"): "--format",
    ("read", "text_field"): "--text-field",
    ("read", "url_field"): "--url-field",
    ("read", "date_field"): "--date-field",
    ("read", "max_record_bytes"): "--max-record-mb",
    ("sketch",): "--ngram-orders",
    ("sketch", "min_order"): "--ngram-orders",
    ("sketch", "max_order"): "--ngram-orders",
    ("sketch", "hll_precision"): "--hll-precision",
    ("sketch", "seed"): "--seed",
    ("sketch", "heavy_hitter_capacity"): "--heavy-hitter-capacity",
    ("storage", "endpoint_url"): "--endpoint-url",
    ("storage", "options"): "--storage-option",
    ("address",): "--address",
    ("num_workers",): "--num-workers",
    ("state_dir",): "--state-dir",
    ("max_errors",): "--max-errors",
    ("profile",): "--profile",
    ("target_shard_bytes",): "--shard-size-mb",
    ("top_ngrams",): "--top-ngrams",
    ("registry",): "--registry",
    ("near_duplicate_threshold",): "--near-duplicate-threshold",
    ("name",): "--name",
    ("ngram_order",): "--ngram-order",
    ("false_positive_rate",): "--false-positive-rate",
    ("num_perm",): "--num-perm",
    ("bands",): "--bands",
    ("shingle_order",): "--shingle-order",
    ("baseline",): "--baseline",
    ("candidate",): "--candidate",
    ("audit", "buckets"): "--buckets",
    ("audit", "blocks"): "--blocks",
    ("audit", "permutations"): "--permutations",
    ("audit", "alpha"): "--alpha",
    ("audit", "permutation_seed"): "--permutation-seed",
    ("audit", "top_ngrams"): "--top-ngrams",
}


class UsageError(ValueError):
    """Invalid arguments or configuration: exit code 2, with a message and no traceback."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        # argparse exits with 2 on invalid arguments and with 0 after --help.
        return exit_request.code if isinstance(exit_request.code, int) else EXIT_INVALID

    # A subcommand may set its own default level; set_defaults on the shared --log-level
    # option would change it for every subcommand, because parent options are shared.
    args.log_level = args.log_level or getattr(args, "default_log_level", "info")
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except (UsageError, JobsError) as error:
        _print_error(str(error))
        return EXIT_INVALID
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the last resort: log with traceback, then one line
        logger.exception("%s %s failed", PROGRAM, args.command)
        _print_error(f"{args.command} failed: {type(error).__name__}: {error}")
        return EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Scan text corpora in local files or object storage and summarize them with mergeable sketches.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default=None,
        choices=("debug", "info", "warning", "error"),
        help="level of the log messages on stderr (default: info)",
    )

    sources = argparse.ArgumentParser(add_help=False)
    sources.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="file, directory, glob, URL (s3://...) or @MANIFEST"
    )
    _add_read_options(sources)
    _add_storage_options(sources)
    sources.add_argument(
        "--shard-size-mb",
        type=float,
        default=256.0,
        help="target shard size in MiB (default: 256). Larger uncompressed JSONL, text and Parquet files are split",
    )

    scan = commands.add_parser(
        "scan",
        parents=[sources, common],
        help="scan sources and write result.json, tables/*.parquet and report.html",
        description="Scan sources and write OUT/result.json, OUT/tables/*.parquet and OUT/report.html.",
    )
    scan.add_argument("--out", required=True, help="output directory, local or in object storage (s3://bucket/prefix)")
    _add_scan_options(scan)
    scan.set_defaults(handler=_scan_command)

    plan = commands.add_parser(
        "plan",
        parents=[sources, common],
        help="print the shard plan without scanning",
        description="List the sources, detect formats and print the shards that a scan would run.",
    )
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.set_defaults(handler=_plan_command)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="generate sample corpora and scan them on an embedded local Ray",
        description=(
            "Generate a synthetic English-like corpus under OUT/corpus and scan it with --group-by domain. "
            "Then generate number sequences from a human chain and two teacher chains, build a reference "
            "profile from OUT/references, scan the mixed corpus OUT/numbers with it into OUT/numbers-scan "
            "and print the estimated synthetic shares next to the true ones."
        ),
    )
    demo.add_argument("--out", default="demo-output", help="output directory (default: demo-output)")
    demo.add_argument(
        "--documents",
        type=int,
        default=DEFAULT_DOCUMENTS,
        help="documents to generate; the default %(default)s is about 77 MB of text in 20 MiB of files",
    )
    demo.add_argument(
        "--number-documents",
        type=int,
        default=DEFAULT_NUMBER_DOCUMENTS,
        help="documents of the mixed number corpus, at least 20 (default: %(default)s). "
        "The reference sets keep their size",
    )
    demo.add_argument("--num-workers", type=int, default=None, help="parallel shard tasks (default: one per CPU)")
    demo.add_argument("--no-progress", action="store_true", help="never show the progress line on stderr")
    # The demo prints its own summaries, so its log shows warnings and errors only.
    demo.set_defaults(handler=_demo_command, default_log_level="warning")

    profile = commands.add_parser(
        "profile",
        help="build reference profiles for the synthetic-share estimate",
        description="Build reference profiles for the synthetic-share estimate.",
    )
    profile_commands = profile.add_subparsers(dest="profile_command", required=True, metavar="COMMAND")
    build = profile_commands.add_parser(
        "build",
        parents=[common],
        help="build a profile from human and generated reference documents",
        description=(
            "Build a reference profile: a vocabulary with word-occurrence probabilities of human and "
            "generated text, and a calibration from held-out reference documents."
        ),
    )
    build.add_argument("--human", nargs="+", required=True, metavar="SOURCE", help="human-written reference documents")
    build.add_argument(
        "--synthetic",
        action="append",
        required=True,
        metavar="NAME=SOURCE",
        help="documents of generator NAME; repeat for more sources or generators",
    )
    build.add_argument("--out", required=True, help="profile file to write, local or in object storage")
    _add_read_options(build)
    _add_storage_options(build)
    reference = build.add_argument_group("reference split and vocabulary")
    reference.add_argument(
        "--group-field",
        help="field naming each record's source document; documents of one source stay on one side of the split",
    )
    reference.add_argument(
        "--skip-leading-words",
        type=int,
        default=0,
        help="drop the first N words of every reference document, such as a prompt the generator continued",
    )
    reference.add_argument(
        "--calibration-share", type=float, default=0.3, help="share of source documents held out (default: 0.3)"
    )
    reference.add_argument("--vocabulary-size", type=int, default=2000, help="words kept (default: 2000)")
    reference.add_argument(
        "--unit",
        choices=("document", "sentence"),
        default="document",
        help="score whole documents or each sentence; the estimate is then a share of sentences (default: document)",
    )
    reference.add_argument(
        "--min-document-share",
        type=float,
        default=0.01,
        help="a word must occur in at least this share of documents of both sets (default: 0.01)",
    )
    reference.add_argument("--keep-punctuation", action="store_true", help="count punctuation and symbols as tokens")
    reference.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    reference.add_argument("--num-workers", type=int, default=None, help="parallel tasks (default: one per CPU)")
    build.set_defaults(handler=_profile_build_command)
    _add_registry_parser(commands, sources, common)
    _add_audit_parser(commands, common)
    add_job_commands(commands, common)
    _add_monitor_commands(commands, common)
    return parser


def _add_registry_parser(commands, sources: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    registry = commands.add_parser(
        "registry",
        help="register known model-generated datasets for the contamination estimate",
        description="Register known model-generated datasets for the contamination estimate of `scan --registry`.",
    )
    registry_commands = registry.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")

    build = registry_commands.add_parser(
        "build",
        parents=[sources, common],
        help="add a dataset to a registry directory",
        description=(
            "Read a dataset on Ray and add it to the registry directory OUT under NAME: MinHash signatures "
            "and LSH bands for near-duplicate lookup, and a Bloom filter of its long word n-grams."
        ),
    )
    build.add_argument("--name", required=True, help="dataset name: letters, digits, '.', '_' or '-'")
    build.add_argument("--out", required=True, help="registry directory, local or in object storage")
    build.add_argument("--replace", action="store_true", help="rebuild a dataset that the registry has already")

    match = build.add_argument_group("matching")
    match.add_argument(
        "--ngram-order", type=int, default=13, help="word n-gram order of the Bloom filter (default: 13)"
    )
    match.add_argument(
        "--false-positive-rate", type=float, default=1e-6,
        help="target false-positive rate of the Bloom filter per n-gram (default: 1e-6). A document of n "
        "n-grams is falsely flagged with chance up to about n times this rate",
    )
    match.add_argument("--num-perm", type=int, default=128, help="MinHash functions per signature (default: 128)")
    match.add_argument(
        "--bands", type=int, default=32, help="LSH bands, a divisor of --num-perm (default: 32, of 4 rows each)"
    )
    match.add_argument(
        "--shingle-order", type=int, default=5, help="word n-gram order of the MinHash shingles (default: 5)"
    )
    match.add_argument("--seed", type=int, default=None, help="seed of the token and n-gram hashes")
    match.add_argument("--keep-punctuation", action="store_true", help="count punctuation and symbols as tokens")

    run = build.add_argument_group("execution")
    run.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    run.add_argument("--num-workers", type=int, default=None, help="parallel shard tasks (default: one per CPU)")
    build.set_defaults(handler=_registry_build_command)


def _add_audit_parser(commands, common: argparse.ArgumentParser) -> None:
    audit = commands.add_parser(
        "audit",
        parents=[common],
        help="test whether two datasets differ in their n-gram distributions",
        description=(
            "Scan a baseline and a candidate dataset and test whether their hashed word n-gram distributions "
            "differ beyond chance (a block permutation test). Writes OUT/audit.json."
        ),
    )
    audit.add_argument("--baseline", nargs="+", required=True, metavar="SOURCE", help="sources of the reference dataset")
    audit.add_argument("--candidate", nargs="+", required=True, metavar="SOURCE", help="sources of the compared dataset")
    audit.add_argument("--out", required=True, help="output directory for audit.json, local or s3://bucket/prefix")
    _add_read_options(audit)
    _add_storage_options(audit)

    test = audit.add_argument_group("test")
    test.add_argument(
        "--ngram-orders", type=_orders_argument, default=(1, 2), metavar="MIN-MAX",
        help="word n-gram orders compared, N or MIN-MAX within 1-8 (default: 1-2)",
    )
    test.add_argument("--buckets", type=int, default=4096, help="hash buckets of the n-gram distribution (default: 4096)")
    test.add_argument("--blocks", type=int, default=32, help="document blocks per dataset, permuted by the test (default: 32)")
    test.add_argument("--permutations", type=int, default=999, help="random relabelings of the blocks (default: 999)")
    test.add_argument("--alpha", type=float, default=0.05, help="significance level of the decision (default: 0.05)")
    test.add_argument("--permutation-seed", type=int, default=0, help="seed of the relabelings (default: 0)")
    test.add_argument("--top-ngrams", type=int, default=20, help="contributing n-grams listed (default: 20)")
    test.add_argument("--seed", type=int, default=None, help="seed of the token and n-gram hashes")
    test.add_argument("--keep-punctuation", action="store_true", help="count punctuation and symbols as tokens")

    run = audit.add_argument_group("execution")
    run.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    run.add_argument("--num-workers", type=int, default=None, help="parallel shard tasks (default: one per CPU)")
    run.add_argument(
        "--shard-size-mb", type=float, default=256.0,
        help="target shard size in MiB (default: 256). Larger uncompressed JSONL, text and Parquet files are split",
    )
    audit.set_defaults(handler=_audit_command)


def _add_monitor_commands(commands, common: argparse.ArgumentParser) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="scan new objects on a schedule, keep a run history and raise alerts",
        description="Recurring monitoring from a YAML configuration: see the Monitoring section of the README.",
    )
    monitor_commands = monitor.add_subparsers(dest="monitor_command", required=True, metavar="COMMAND")
    run_once = monitor_commands.add_parser(
        "run-once",
        parents=[common],
        help="scan the objects that are new since the last run, append a history row and check the alert rules",
        description=(
            "Scan the objects that are new since the last successful run, append one history row and check the "
            "alert rules. Exit codes: 0 no alert, 1 the run failed, 2 invalid configuration, "
            "3 shards failed but no alert, 4 an alert fired."
        ),
    )
    serve = monitor_commands.add_parser(
        "serve",
        parents=[common],
        help="run `monitor run-once` on the configured schedule until SIGTERM",
        description="Run `monitor run-once` at every time of the configured schedule; SIGTERM or SIGINT stops it.",
    )
    history = monitor_commands.add_parser("history", parents=[common], help="print the run history")
    history.add_argument("--last", type=int, default=None, metavar="N", help="print only the last N runs")
    history.add_argument("--json", action="store_true", help="print the runs as JSON")
    report = monitor_commands.add_parser(
        "report", parents=[common], help="write a static HTML page with the trends of the run history"
    )
    report.add_argument("--out", required=True, help="HTML file to write, local or in object storage")
    for parser, handler in (
        (run_once, _monitor_run_once_command),
        (serve, _monitor_serve_command),
        (history, _monitor_history_command),
        (report, _monitor_report_command),
    ):
        parser.add_argument("config", metavar="CONFIG", help="monitor configuration file (YAML)")
        parser.set_defaults(handler=handler)


def _add_read_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading")
    group.add_argument(
        "--format",
        default="auto",
        choices=("auto", "jsonl", "parquet", "warc", "wet", "arc", "text"),
        help="record format; auto detects it from each object's first bytes (default: auto)",
    )
    group.add_argument("--text-field", default="text", help="JSONL key or Parquet column with the text (default: text)")
    group.add_argument("--url-field", help="JSONL key or Parquet column with the URL (default: url, when present)")
    group.add_argument(
        "--date-field", help="JSONL key or Parquet column with the date (default: date, timestamp or created)"
    )
    group.add_argument(
        "--lines-as-documents", action="store_true", help="plain text: one document per line instead of per file"
    )
    group.add_argument(
        "--max-record-mb",
        type=float,
        default=64.0,
        help="a JSONL line, text document or archive record body larger than this many MiB is skipped "
        "and counted as record_too_large (default: 64)",
    )


def _add_storage_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("storage")
    group.add_argument(
        "--endpoint-url", help="S3 endpoint for storage other than AWS, for example http://127.0.0.1:9000"
    )
    group.add_argument("--anon", action="store_true", help="read s3:// anonymously, without credentials")
    group.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec filesystem option, repeatable, for example requester_pays=true or region_name=us-east-1",
    )


def _add_scan_options(parser: argparse.ArgumentParser) -> None:
    sketch = parser.add_argument_group("statistics")
    sketch.add_argument(
        "--ngram-orders", type=_orders_argument, default=(1, 5), metavar="MIN-MAX",
        help="word n-gram orders, N or MIN-MAX within 1-8 (default: 1-5)",
    )
    sketch.add_argument("--top-ngrams", type=int, default=50, help="n-grams listed per order (default: 50)")
    sketch.add_argument(
        "--profile", help="reference profile (from `profile build`) for the synthetic-share estimate"
    )
    sketch.add_argument(
        "--registry", help="registry directory (from `registry build`) for the contamination estimate"
    )
    sketch.add_argument(
        "--near-duplicate-threshold", type=float, default=0.8,
        help="estimated Jaccard similarity with a registered document at or above which a document is a "
        "near duplicate (default: 0.8)",
    )
    sketch.add_argument(
        "--hll-precision", type=int, default=None,
        help="HyperLogLog precision p, 4-18: 2**p registers per order, relative standard error 1.04 / sqrt(2**p) "
        "(default: 14)",
    )
    sketch.add_argument("--seed", type=int, default=None, help="seed of the token and n-gram hashes")
    sketch.add_argument(
        "--heavy-hitter-capacity", type=int, default=None,
        help="k: every n-gram above 1/(k+1) of its order's n-grams is a top n-gram candidate (default: 1024)",
    )
    sketch.add_argument("--keep-punctuation", action="store_true", help="count punctuation and symbols as tokens")
    sketch.add_argument(
        "--group-by", default="none", choices=("none", "snapshot", "domain"),
        help="count documents per crawl month (snapshot) or registered domain (default: none)",
    )

    run = parser.add_argument_group("execution")
    run.add_argument("--address", help="Ray cluster address (default: start an embedded local Ray)")
    run.add_argument("--num-workers", type=int, default=None, help="parallel shard tasks (default: one per CPU)")
    run.add_argument("--state-dir", help="checkpoint directory (default: OUT/state)")
    run.add_argument(
        "--resume", action="store_true", help="reuse the checkpoints of shards that an earlier scan finished"
    )
    run.add_argument(
        "--max-errors", type=int, default=None,
        help="skipped records tolerated before the exit code is 3 (default: no limit). Skips are always reported",
    )
    run.add_argument(
        "--no-pack", action="store_true",
        help="scan every shard in a task of its own. By default, when there are more than "
        f"{TASKS_PER_WORKER} shards per worker, consecutive small shards share a task",
    )
    run.add_argument("--no-progress", action="store_true", help="never show the progress line on stderr")


def _orders_argument(text: str) -> tuple[int, int]:
    try:
        return parse_orders(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error}, for example 1-5") from None


def _scan_command(args: argparse.Namespace) -> int:
    config = scan_config_from_args(args)
    result, location = run_and_write(config, progress_enabled=False if args.no_progress else None)
    print(format_summary(result, location))
    return exit_code_for(result)


def _plan_command(args: argparse.Namespace) -> int:
    storage = _storage_from_args(args)
    target = _shard_bytes(args.shard_size_mb)
    try:
        objects = list_objects(args.sources, storage)
    except SourceError as error:
        raise UsageError(str(error)) from None
    plan = build_plan(objects, storage, declared_format=args.format, target_shard_bytes=target)
    print(plan.to_json() if args.json else plan.format_table())
    return EXIT_OK


def _demo_command(args: argparse.Namespace) -> int:
    # Imported here because they import Ray, which `plan` and argument errors do not need.
    import ray

    from scanner.profile_build import build_profile
    from scanner.runner import start_ray

    out = pathlib.Path(args.out)
    corpus = out / "corpus"
    profile_path = out / "numbers.profile"
    progress_enabled = False if args.no_progress else None
    # The demo does not resume, so its checkpoints go to a directory that is removed afterwards.
    with tempfile.TemporaryDirectory(prefix="corpus-scanner-demo-state-") as state_dir:
        # Both configurations are validated before any corpus is written or Ray starts.
        config = _validated_config(
            {
                "sources": [str(corpus)],
                "out": str(out),
                "group_by": "domain",
                "num_workers": args.num_workers,
                "state_dir": f"{state_dir}/corpus",
                "max_errors": None,
            }
        )
        number_config = _validated_config(
            {
                "sources": [str(out / "numbers")],
                "out": str(out / "numbers-scan"),
                "profile": str(profile_path),
                "num_workers": args.num_workers,
                "state_dir": f"{state_dir}/numbers",
                "max_errors": None,
            }
        )
        try:
            paths = write_demo_corpus(corpus, args.documents)
        except ValueError as error:
            raise UsageError(f"{error} (--documents)") from None
        try:
            numbers = write_number_corpus(out, args.number_documents)
        except ValueError as error:
            raise UsageError(f"{error} (--number-documents)") from None
        size = sum(path.stat().st_size for path in paths)
        print(f"wrote {args.documents:,} documents in {len(paths)} files ({size / MIB:.1f} MiB) to {corpus}")

        # One embedded Ray serves both scans and the profile build, which saves two Ray starts.
        started_ray = start_ray(None, args.num_workers)
        try:
            result, location = run_and_write(config, progress_enabled)
            print(format_summary(result, location))
            print(f"open {location}/report.html in a browser for the report")

            # The second part: a profile from the number references, then a scan of a corpus with known shares.
            print()
            print(describe_number_corpus(numbers))
            profile = build_profile(number_profile_config(numbers, profile_path, args.num_workers))
            profile.save(str(profile_path))
            generators = ", ".join(profile.generators)
            print(f"wrote profile {profile_path}: {len(profile.words)} words, generators {generators}")

            number_result, number_location = run_and_write(number_config, progress_enabled)
            print(format_number_shares(number_result, numbers, number_location))
        finally:
            if started_ray:
                ray.shutdown()
    return max(exit_code_for(result), exit_code_for(number_result))


def _profile_build_command(args: argparse.Namespace) -> int:
    from scanner.profile_build import ProfileBuildConfig, build_profile

    synthetic: dict[str, list[str]] = {}
    for item in args.synthetic:
        name, separator, source = item.partition("=")
        if not separator or not name or not source:
            raise UsageError(f"invalid --synthetic {item!r}: expected NAME=SOURCE, for example gpt-4=s3://bucket/gpt4/")
        synthetic.setdefault(name, []).append(source)
    fields = {
        "human": args.human,
        "synthetic": synthetic,
        "out": args.out,
        "read": _read_fields(args),
        "sketch": {"keep_punctuation": args.keep_punctuation},
        "storage": _storage_from_args(args),
        "group_field": args.group_field,
        "skip_leading_words": args.skip_leading_words,
        "unit": args.unit,
        "calibration_share": args.calibration_share,
        "vocabulary_size": args.vocabulary_size,
        "min_document_share": args.min_document_share,
        "address": args.address,
        "num_workers": args.num_workers,
    }
    try:
        config = ProfileBuildConfig.model_validate(fields)
    except ValidationError as error:
        raise UsageError(describe_validation_error(error)) from None
    try:
        profile = build_profile(config)
    except (SourceError, ValueError) as error:
        raise UsageError(str(error)) from None
    profile.save(config.out, config.storage)
    documents = profile.build["documents"]
    print(f"wrote profile {redact_url(config.out)}: {len(profile.words)} words, generators {', '.join(profile.generators)}")
    units = "sentences" if profile.unit == "sentence" else "documents"
    for name, counts in documents.items():
        print(f"  {name}: {counts['fit']} fit {units}, {counts['calibration']} held out for calibration")
    check = profile.build.get("self_check")
    if check:
        print(
            f"self-check on held-out {units} ({check['target_documents']}-{profile.unit} targets, "
            "half the calibration):"
        )
        for row in check["results"]:
            if row["runs"]:
                print(
                    f"  share {row['share']:.2f}: bias {row['bias']:+.3f}, RMSE {row['rmse']:.3f}, "
                    f"interval coverage {row['coverage']:.0%} ({row['runs']} runs)"
                )
    return EXIT_OK


def _registry_build_command(args: argparse.Namespace) -> int:
    from scanner.registry import RegistryBuildConfig, RegistryError, build_dataset, save_dataset

    sketch = {"keep_punctuation": args.keep_punctuation}
    if args.seed is not None:
        sketch["seed"] = args.seed
    fields = {
        "name": args.name,
        "sources": args.sources,
        "out": args.out,
        "replace": args.replace,
        "read": _read_fields(args),
        "sketch": sketch,
        "storage": _storage_from_args(args),
        "ngram_order": args.ngram_order,
        "false_positive_rate": args.false_positive_rate,
        "num_perm": args.num_perm,
        "bands": args.bands,
        "shingle_order": args.shingle_order,
        "address": args.address,
        "num_workers": args.num_workers,
        "target_shard_bytes": _shard_bytes(args.shard_size_mb),
    }
    try:
        config = RegistryBuildConfig.model_validate(fields)
    except ValidationError as error:
        raise UsageError(describe_validation_error(error)) from None
    check_ray_address(config.address)
    try:
        dataset = build_dataset(config)
        save_dataset(dataset, config)
    except (SourceError, RegistryError) as error:
        raise UsageError(str(error)) from None
    bloom = dataset.bloom_parameters
    print(
        f"registered {config.name!r} in {redact_url(config.out)}: {dataset.manifest['documents']:,} documents, "
        f"{bloom['ngrams']:,} {bloom['ngram_order']}-grams (repeats included) in a Bloom filter of {bloom['num_bits']:,} bits "
        f"with false-positive rate {bloom['false_positive_rate']:.2g} per n-gram"
    )
    return EXIT_OK


def _audit_command(args: argparse.Namespace) -> int:
    from scanner.audit import (
        AuditConfig,
        AuditFailedError,
        EmptyDatasetError,
        build_audit_result,
        format_audit_summary,
        run_audit,
        write_audit,
    )

    min_order, max_order = args.ngram_orders
    sketch = {"min_order": min_order, "max_order": max_order, "keep_punctuation": args.keep_punctuation}
    if args.seed is not None:
        sketch["seed"] = args.seed
    fields = {
        "baseline": args.baseline,
        "candidate": args.candidate,
        "out": args.out,
        "read": _read_fields(args),
        "sketch": sketch,
        "storage": _storage_from_args(args),
        "audit": {
            "buckets": args.buckets,
            "blocks": args.blocks,
            "permutations": args.permutations,
            "alpha": args.alpha,
            "permutation_seed": args.permutation_seed,
            "top_ngrams": args.top_ngrams,
        },
        "address": args.address,
        "num_workers": args.num_workers,
        "target_shard_bytes": _shard_bytes(args.shard_size_mb),
    }
    try:
        config = AuditConfig.model_validate(fields)
    except ValidationError as error:
        raise UsageError(describe_validation_error(error)) from None
    check_output_location(config.out)
    check_ray_address(config.address)
    try:
        result = build_audit_result(run_audit(config))
    except (SourceError, EmptyDatasetError) as error:
        raise UsageError(str(error)) from None
    except AuditFailedError as error:
        _print_error(str(error))
        return EXIT_FAILED
    location = write_audit(result, config.out, config.storage)
    print(format_audit_summary(result, location))
    return EXIT_OK


def _load_monitor_config(path: str):
    from scanner.monitor_config import MonitorConfigError, load_monitor_config

    try:
        return load_monitor_config(path)
    except MonitorConfigError as error:
        raise UsageError(f"{path}: {error}" if "\n" not in str(error) else f"{path}:\n{error}") from None


def _monitor_run_once_command(args: argparse.Namespace) -> int:
    from scanner.monitor import run_once
    from scanner.monitor_config import MonitorConfigError

    config = _load_monitor_config(args.config)
    try:
        report = run_once(config)
    except MonitorConfigError as error:
        raise UsageError(str(error)) from None
    row = report.row
    print(f"run {row['run_id']}: {row['status']}, {row['objects']} new objects")
    if row.get("result_url"):
        print(f"scan output: {row['result_url']}")
    for alert in report.alerts:
        print(f"alert: {alert.rule}: {alert.message}")
    return report.exit_code


def _monitor_serve_command(args: argparse.Namespace) -> int:
    from scanner.monitor import serve
    from scanner.monitor_config import MonitorConfigError

    config = _load_monitor_config(args.config)
    try:
        return serve(config, str(pathlib.Path(args.config).resolve()), args.log_level)
    except MonitorConfigError as error:
        raise UsageError(str(error)) from None


def _monitor_history_command(args: argparse.Namespace) -> int:
    import json

    from scanner.history import HistoryStore
    from scanner.monitor import format_history

    config = _load_monitor_config(args.config)
    if args.last is not None and args.last < 1:
        raise UsageError(f"invalid --last {args.last}: give a positive number of runs")
    rows = HistoryStore(config.history, config.history_storage_options()).read_runs()
    if args.last is not None:
        rows = rows[-args.last :]
    if args.json:
        print(json.dumps(rows, default=lambda value: value.isoformat(), indent=2))
    elif not rows:
        print(f"no runs yet in {redact_url(config.history)}")
    else:
        print(format_history(rows))
    return EXIT_OK


def _monitor_report_command(args: argparse.Namespace) -> int:
    from scanner.history import HistoryStore
    from scanner.storage import filesystem_for, url_for
    from scanner.trend_report import render_trend_report

    config = _load_monitor_config(args.config)
    storage = config.history_storage_options()
    rows = HistoryStore(config.history, storage).read_runs()
    page = render_trend_report(config.name, rows).encode("utf-8")
    fs, path = filesystem_for(args.out, storage)
    if "://" not in args.out or args.out.startswith("file://"):
        fs.makedirs(fs._parent(path), exist_ok=True)
    if fs.isdir(path):
        raise UsageError(f"invalid --out {args.out!r}: it is a directory; give a file name such as trends.html")
    fs.pipe_file(path, page)
    print(f"wrote {redact_url(url_for(fs, path))} ({len(rows)} runs)")
    return EXIT_OK


def scan_config_from_args(args: argparse.Namespace) -> ScanConfig:
    """Build the scan configuration from parsed arguments. Raises UsageError naming the invalid option."""
    min_order, max_order = args.ngram_orders
    sketch = {"min_order": min_order, "max_order": max_order, "keep_punctuation": args.keep_punctuation}
    for field, value in (
        ("hll_precision", args.hll_precision),
        ("seed", args.seed),
        ("heavy_hitter_capacity", args.heavy_hitter_capacity),
    ):
        if value is not None:
            sketch[field] = value

    return _validated_config(
        {
            "sources": args.sources,
            "out": args.out,
            "read": _read_fields(args),
            "sketch": sketch,
            "storage": _storage_from_args(args),
            "group_by": args.group_by,
            "address": args.address,
            "num_workers": args.num_workers,
            "state_dir": args.state_dir,
            "resume": args.resume,
            "max_errors": args.max_errors,
            "target_shard_bytes": _shard_bytes(args.shard_size_mb),
            "top_ngrams": args.top_ngrams,
            "profile": args.profile,
            "registry": args.registry,
            "near_duplicate_threshold": args.near_duplicate_threshold,
            "pack_shards": not args.no_pack,
        }
    )


def _read_fields(args: argparse.Namespace) -> dict:
    """Return the read settings given by the options of `_add_read_options`."""
    return {
        "format": args.format,
        "text_field": args.text_field,
        "url_field": args.url_field,
        "date_field": args.date_field,
        "lines_as_documents": args.lines_as_documents,
        "max_record_bytes": _max_record_bytes(args.max_record_mb),
    }


def _max_record_bytes(megabytes: float) -> int:
    if not megabytes > 0:
        raise UsageError(f"invalid --max-record-mb {megabytes}: use a positive size in MiB, for example 64")
    return max(1, int(megabytes * MIB))


def _validated_config(fields: dict) -> ScanConfig:
    try:
        return ScanConfig.model_validate(fields)
    except ValidationError as error:
        raise UsageError(describe_validation_error(error)) from None


def _storage_from_args(args: argparse.Namespace) -> StorageOptions:
    try:
        return StorageOptions.from_cli(args.endpoint_url, args.anon, args.storage_option)
    except ValidationError as error:
        raise UsageError(describe_validation_error(error, prefix=("storage",))) from None
    except ValueError as error:
        raise UsageError(str(error)) from None


def _shard_bytes(megabytes: float) -> int:
    if not megabytes > 0:
        raise UsageError(f"invalid --shard-size-mb {megabytes}: use a positive size in MiB, for example 256")
    return max(1, int(megabytes * MIB))


def describe_validation_error(error: ValidationError, prefix: tuple[str, ...] = ()) -> str:
    """Describe each validation error on one line, naming the command-line option and the rejected value.

    Values of storage options are left out, because they may be credentials.
    """
    lines = []
    for item in error.errors():
        location = prefix + tuple(str(part) for part in item["loc"])
        option = _OPTION_FOR_FIELD.get(location[:2]) or _OPTION_FOR_FIELD.get(location[:1]) or ".".join(location)
        message = item["msg"].removeprefix("Value error, ")
        if location[:1] == ("storage",) or "input" not in item or isinstance(item["input"], dict):
            lines.append(f"invalid {option}: {message}")
        else:
            lines.append(f"invalid {option} {item['input']!r}: {message}")
    return "\n".join(lines)


def check_output_location(out: str) -> None:
    """Raise UsageError when a local output location is a file, read-only or full."""
    if "://" in out and not out.startswith("file://"):
        return
    path = pathlib.Path(out.removeprefix("file://")).expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"invalid --out {out!r}: it is a file; give a directory to write result.json and tables into")
    try:
        check_local_directory_writable(str(path.absolute()), "--out")
    except UnwritableLocationError as error:
        raise UsageError(str(error)) from None


def check_ray_address(address: str | None, timeout: float = 10.0) -> None:
    """Raise UsageError when a host:port Ray address does not accept connections within `timeout` seconds.

    Ray itself retries an unreachable address for a long time without a message
    a user can act on. Addresses such as "auto" or "ray://..." are left to Ray.
    """
    if not address or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except ValueError:
        raise UsageError(f"invalid --address {address!r}: expected HOST:PORT of the Ray head node") from None
    except OSError as error:
        raise UsageError(
            f"cannot reach the Ray cluster at --address {address!r}: {error}. "
            "Check that the head node runs (`ray start --head`) and the port is open, or leave out --address "
            "to start an embedded local Ray"
        ) from None


def run_and_write(config: ScanConfig, progress_enabled: bool | None) -> tuple[ScanResult, str]:
    """Run the scan and write its outputs; return the result and the output URL.

    Raises UsageError when the output location is a file, the Ray address is
    unreachable, a source matches no objects, or the profile is missing or does
    not fit the settings.
    """
    check_output_location(config.out)
    check_ray_address(config.address)
    # Imported here because the runner imports Ray, which `plan` and argument errors do not need.
    from scanner.output import write_outputs
    from scanner.result import build_result
    from scanner.runner import run_scan

    logger.info(
        "scan starting: %d sources, output %s, storage %s",
        len(config.sources),
        redact_url(config.out),
        config.storage.redacted(),
    )
    from scanner.profile import ProfileMismatchError
    from scanner.registry import RegistryError

    try:
        outcome = run_scan(config, progress_enabled=progress_enabled)
    except (SourceError, ProfileMismatchError, RegistryError, UnwritableLocationError, BundleMismatchError) as error:
        raise UsageError(str(error)) from None
    except FileNotFoundError as error:
        if config.profile is None:
            raise
        raise UsageError(str(error)) from None
    result = build_result(outcome)
    try:
        location = write_outputs(outcome, result, config.out, config.storage)
    except UnwritableLocationError as error:
        raise UsageError(str(error)) from None
    return result, location


def exit_code_for(result: ScanResult) -> int:
    """Return 3 when the result lists problems (failed shards, too many skipped records), else 0."""
    return EXIT_INCOMPLETE if result.problems else EXIT_OK


def format_summary(result: ScanResult, location: str) -> str:
    """Return the short summary printed after a scan."""
    skipped = f"{result.errors.count:,}"
    if result.errors.by_reason:
        skipped += " (" + ", ".join(f"{reason} {count:,}" for reason, count in result.errors.by_reason.items()) + ")"
    lines = [
        f"documents:        {result.documents:,} ({result.empty_documents:,} empty)",
        f"tokens:           {result.tokens:,}",
        f"text bytes:       {result.bytes:,}",
        f"distinct n-grams: {_distinct_summary(result)}",
        f"shards:           {result.shards.completed:,} completed, {result.shards.failed:,} failed, "
        f"{result.shards.total:,} planned",
        f"skipped records:  {skipped}",
        f"seconds:          {result.seconds:.1f}",
        f"output:           {location}",
    ]
    share = result.synthetic_share
    if share is not None:
        low, high = share.ci95
        lines.insert(4, f"synthetic share:  {share.estimate:.3f} (95% interval {low:.3f} to {high:.3f})")
        if share.fit.warning:
            lines.append(f"warning: {share.fit.warning}")
    if result.contamination is not None:
        for name, item in result.contamination.registry.items():
            lines.insert(
                -2,
                f"registry {name}: near-duplicate share {item.near_duplicate_share:.4f}, "
                f"long n-gram share {item.long_ngram_share:.4f}",
            )
    if result.resumed_shards:
        lines.insert(-1, f"resumed shards:   {result.resumed_shards:,} from checkpoints")
    for problem in result.problems:
        lines.append(f"incomplete: {problem}")
    return "\n".join(lines)


def _distinct_summary(result: ScanResult) -> str:
    if not result.ngrams:
        return "none"
    counts = ", ".join(f"order {order} {stats.distinct:,.0f}" for order, stats in result.ngrams.items())
    rse = next(iter(result.ngrams.values())).distinct_rse
    return f"{counts} (estimates, relative standard error {rse:.1%})"


def _print_error(message: str) -> None:
    for line in message.splitlines() or [""]:
        print(f"{PROGRAM}: error: {line}", file=sys.stderr)
