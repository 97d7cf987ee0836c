"""Worker time of a scan by project call: py-spy samples of a 1-worker scan.

Run: PYTHONPATH=. .venv/bin/python benchmarks/profile_scan.py [--megabytes 100] [--no-profile]

The script runs itself under `py-spy record --subprocesses` (py-spy comes with
ray[default]). The child scans the gzip JSONL corpus of benchmarks/peers.py on
a local Ray with 1 worker, with the benchmark profile unless `--no-profile` is
given. Ray is started and warmed by a scan of two files first, as `peers.py`
does for its "Ray already running" row. Then the samples of the Ray worker processes
are grouped by the deepest frame in this project's code (scanner/ and
kernels/), labelled with the call on that source line. Numba kernels have no
Python frames, so a kernel's time shows as the line that calls it. The table
lists each call's share of the samples taken inside shard tasks and merges.

NOTE: py-spy sometimes credits a kernel's time to the line before its call: in
`tokenize_batch` most of `tokenize` showed under `scratch.ensure`, which takes
microseconds. Read rows of one function together.
"""

import argparse
import collections
import linecache
import os
import pathlib
import re
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
_FRAME = re.compile(r"^(?P<function>.+) \((?P<path>[^()]+):(?P<line>\d+)\)$")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\(")
TASK_FRAMES = ("scan_shard (", "_merge_bytes (")


def child(megabytes: float, with_profile: bool) -> None:
    sys.path.insert(0, str(HERE))
    import peers

    entries = peers.build_corpus(megabytes)
    profile = peers.build_benchmark_profile() if with_profile else None
    paths = [peers.jsonl_path(entry) for entry in entries]
    out = pathlib.Path(tempfile.mkdtemp(prefix="corpus-scanner-profile-"))
    seconds = peers.scan_on_running_ray(paths, 1, profile, out)
    print(f"scanned {peers.text_megabytes(entries):.1f} MB of text in {seconds:.1f} s under py-spy", flush=True)


def label(frame: str) -> str | None:
    """Return "function: call" for a frame in this project's code, or None for other frames."""
    match = _FRAME.match(frame)
    if not match or not re.match(r"^(scanner|kernels)/", match["path"]):
        return None
    source = linecache.getline(str(ROOT / match["path"]), int(match["line"])).strip()
    calls = [name for name in _CALL.findall(source) if name not in {"int", "len", "float", "range", "np.uint64"}]
    call = calls[0] if calls else source[:40]
    return f"{match['function']} ({match['path']}): {call}"


def summarize(raw: pathlib.Path, top: int) -> None:
    totals: collections.Counter[str] = collections.Counter()
    tasks = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(frame.startswith(TASK_FRAMES) for frame in frames):
            continue
        tasks += int(count)
        labels = [name for name in map(label, frames) if name]
        totals[labels[-1] if labels else "outside the project"] += int(count)
    if not tasks:
        raise RuntimeError(f"py-spy recorded no samples inside shard tasks or merges in {raw}")
    print(f"\n{tasks} samples inside shard tasks and merges\n")
    print("| share | deepest project frame: call on its line |")
    print("|---|---|")
    for name, count in totals.most_common(top):
        print(f"| {100 * count / tasks:.1f}% | {name} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=100, help="MB of text to scan")
    parser.add_argument("--no-profile", action="store_true", help="scan without the reference profile")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="rows in the table")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.megabytes, not arguments.no_profile)
        return

    py_spy = pathlib.Path(sys.executable).with_name("py-spy")
    if not py_spy.is_file():
        sys.exit(f"py-spy not found next to {sys.executable}: install ray[default] or py-spy")
    raw = pathlib.Path(tempfile.mkdtemp(prefix="corpus-scanner-py-spy-")) / "samples.txt"
    command = [
        str(py_spy), "record", "--subprocesses", "--rate", str(arguments.rate), "--format", "raw",
        "--output", str(raw), "--", sys.executable, __file__, "--child", "--megabytes", str(arguments.megabytes),
    ]
    if arguments.no_profile:
        command.append("--no-profile")
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run(command, check=True, env=environment)
    summarize(raw, arguments.top)


if __name__ == "__main__":
    main()
