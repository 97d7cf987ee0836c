"""Listing sources (paths, globs, manifests, S3 prefixes) and the storage options behind them."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle
from typing import Any

import pytest
from pydantic import ValidationError

from scanner.sources import ObjectInfo, SourceError, list_objects
from scanner.storage import StorageOptions, filesystem_for, parse_storage_option


LOCAL = StorageOptions()


def _write(path: pathlib.Path, data: bytes) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def corpus_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "corpus"
    _write(root / "top.jsonl", b'{"text": "a"}\n')
    _write(root / "2024" / "part-0.jsonl", b'{"text": "b"}\n')
    _write(root / "2024" / "deep" / "part-1.jsonl", b'{"text": "c"}\n')
    _write(root / "2024" / "notes.txt", b"plain text\n")
    _write(root / "empty.jsonl", b"")
    _write(root / ".hidden.jsonl", b'{"text": "d"}\n')
    return root


def _urls(objects: list[ObjectInfo]) -> list[str]:
    return [info.url for info in objects]


# Storage options


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("requester_pays=true", "requester_pays", True),
        ("use_ssl=False", "use_ssl", False),
        ("max_attempts=7", "max_attempts", 7),
        ("read_timeout=2.5", "read_timeout", 2.5),
        ("region_name=eu-west-1", "region_name", "eu-west-1"),
        ("profile=a=b", "profile", "a=b"),
    ],
)
def test_parse_storage_option_types(text: str, key: str, value: object) -> None:
    parsed_key, parsed_value = parse_storage_option(text)
    assert parsed_key == key
    assert parsed_value == value
    assert type(parsed_value) is type(value)


def test_parse_storage_option_keeps_secret_as_text() -> None:
    key, value = parse_storage_option("token=12345")
    options = StorageOptions(options={key: value})
    assert options.plain_options()["token"] == "12345"


def test_parse_storage_option_missing_equals() -> None:
    with pytest.raises(ValueError) as raised:
        parse_storage_option("requester_pays")
    assert "'requester_pays'" in str(raised.value)
    assert "KEY=VALUE" in str(raised.value)


def test_storage_from_cli_duplicate_key() -> None:
    with pytest.raises(ValueError, match="given twice"):
        StorageOptions.from_cli(storage_options=["anon_x=1", "anon_x=2"])


def test_storage_rejects_unknown_field() -> None:
    with pytest.raises(ValidationError):
        StorageOptions(endpoint="http://127.0.0.1:9000")  # type: ignore[call-arg]


def test_storage_rejects_endpoint_without_scheme() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        StorageOptions(endpoint_url="127.0.0.1:9000")


def test_storage_rejects_endpoint_with_password() -> None:
    with pytest.raises(ValidationError) as raised:
        StorageOptions(endpoint_url="http://user:url-password@127.0.0.1:9000")
    assert "url-password" not in str(raised.value)
    assert "--storage-option key=" in str(raised.value)


def test_storage_repr_hides_secrets() -> None:
    storage = StorageOptions.from_cli(
        endpoint_url="http://127.0.0.1:9000",
        storage_options=["key=AKIAEXAMPLEKEY", "secret=hunter2secret", "requester_pays=true"],
    )
    outputs = [repr(storage), str(storage), storage.model_dump_json(), str(storage.redacted())]
    for text in outputs:
        assert "AKIAEXAMPLEKEY" not in text
        assert "hunter2secret" not in text
    assert storage.redacted()["options"]["requester_pays"] is True


def test_storage_pickle_keeps_secrets() -> None:
    storage = StorageOptions.from_cli(storage_options=["secret=hunter2secret"])
    restored = pickle.loads(pickle.dumps(storage))
    assert restored.plain_options() == {"secret": "hunter2secret"}


def test_filesystem_for_local_path(tmp_path: pathlib.Path) -> None:
    fs, path = filesystem_for(f"file://{tmp_path}/a.jsonl", LOCAL)
    assert path == str(tmp_path / "a.jsonl")
    assert "file" in fs.protocol


def test_filesystem_for_s3_timeouts() -> None:
    storage = StorageOptions.from_cli(
        endpoint_url="http://127.0.0.1:9", storage_options=["read_timeout=5", "max_attempts=2"]
    )
    fs, path = filesystem_for("s3://bucket/prefix/key.jsonl", storage)
    assert path == "bucket/prefix/key.jsonl"
    assert fs.client_kwargs["endpoint_url"] == "http://127.0.0.1:9"
    assert fs.config_kwargs["read_timeout"] == 5
    assert fs.config_kwargs["connect_timeout"] > 0
    assert fs.config_kwargs["retries"]["total_max_attempts"] == 2


def test_filesystem_for_s3_anonymous() -> None:
    fs, _ = filesystem_for("s3://public-bucket/key", StorageOptions(anon=True))
    assert fs.anon is True


# Local sources


def test_directory_lists_every_file(corpus_dir: pathlib.Path) -> None:
    objects = list_objects([str(corpus_dir)], LOCAL)
    expected = sorted(str(path) for path in corpus_dir.rglob("*") if path.is_file())
    assert _urls(objects) == expected


def test_directory_keeps_zero_byte_file(corpus_dir: pathlib.Path) -> None:
    objects = list_objects([str(corpus_dir)], LOCAL)
    sizes = {info.url: info.size for info in objects}
    assert sizes[str(corpus_dir / "empty.jsonl")] == 0


def test_glob_star_one_level(corpus_dir: pathlib.Path) -> None:
    objects = list_objects([f"{corpus_dir}/*.jsonl"], LOCAL)
    # fsspec's `*` matches dot files too, unlike the shell.
    expected = [str(corpus_dir / name) for name in (".hidden.jsonl", "empty.jsonl", "top.jsonl")]
    assert _urls(objects) == expected


def test_glob_double_star_nested(corpus_dir: pathlib.Path) -> None:
    objects = list_objects([f"{corpus_dir}/2024/**/*.jsonl"], LOCAL)
    expected = [str(corpus_dir / "2024" / "deep" / "part-1.jsonl"), str(corpus_dir / "2024" / "part-0.jsonl")]
    assert _urls(objects) == expected


def test_glob_matching_directory_expands_it(corpus_dir: pathlib.Path) -> None:
    objects = list_objects([f"{corpus_dir}/20*"], LOCAL)
    assert len(objects) == 3


def test_file_url_matches_plain_path(corpus_dir: pathlib.Path) -> None:
    by_url = list_objects([f"file://{corpus_dir}/top.jsonl"], LOCAL)
    by_path = list_objects([str(corpus_dir / "top.jsonl")], LOCAL)
    assert by_url == by_path


def test_relative_path_becomes_absolute(corpus_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(corpus_dir)
    objects = list_objects(["top.jsonl"], LOCAL)
    assert _urls(objects) == [str(corpus_dir / "top.jsonl")]


def test_overlapping_sources_deduplicated(corpus_dir: pathlib.Path) -> None:
    objects = list_objects([str(corpus_dir / "top.jsonl"), str(corpus_dir), f"{corpus_dir}/*.jsonl"], LOCAL)
    urls = _urls(objects)
    assert len(urls) == len(set(urls))
    assert urls == sorted(urls)


def test_local_mtime_and_size_recorded(corpus_dir: pathlib.Path) -> None:
    path = corpus_dir / "top.jsonl"
    (info,) = list_objects([str(path)], LOCAL)
    assert info.size == path.stat().st_size
    assert info.mtime == path.stat().st_mtime
    assert info.etag is None


def test_missing_path_raises_source_error(tmp_path: pathlib.Path) -> None:
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(SourceError) as raised:
        list_objects([missing], LOCAL)
    assert missing in str(raised.value)
    assert "check" in str(raised.value)


def test_glob_matching_nothing_raises(corpus_dir: pathlib.Path) -> None:
    with pytest.raises(SourceError, match=r"\*\.parquet"):
        list_objects([f"{corpus_dir}/*.parquet"], LOCAL)


def test_empty_directory_raises(tmp_path: pathlib.Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="matched no objects"):
        list_objects([str(tmp_path / "empty")], LOCAL)


def test_no_sources_raises() -> None:
    with pytest.raises(SourceError, match="no sources"):
        list_objects([], LOCAL)


def test_source_error_is_value_error() -> None:
    assert issubclass(SourceError, ValueError)


# Manifests


def test_manifest_relative_entries_and_comments(corpus_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    manifest = _write(
        tmp_path / "lists" / "list.txt",
        b"# one source per line\n\n../corpus/top.jsonl\n   \n"
        + f"{corpus_dir}/2024/part-0.jsonl\n".encode()
        + b"  # indented comment\n",
    )
    objects = list_objects([f"@{manifest}"], LOCAL)
    assert _urls(objects) == [str(corpus_dir / "2024" / "part-0.jsonl"), str(corpus_dir / "top.jsonl")]


def test_manifest_entries_may_be_globs(corpus_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    manifest = _write(tmp_path / "list.txt", b"corpus/2024/**/*.jsonl\n")
    objects = list_objects([f"@{manifest}"], LOCAL)
    assert len(objects) == 2


def test_manifest_missing_entry_names_line(tmp_path: pathlib.Path, corpus_dir: pathlib.Path) -> None:
    manifest = _write(tmp_path / "list.txt", b"corpus/top.jsonl\n# comment\ncorpus/gone.jsonl\n")
    with pytest.raises(SourceError) as raised:
        list_objects([f"@{manifest}"], LOCAL)
    assert "line 3" in str(raised.value)
    assert "gone.jsonl" in str(raised.value)


def test_manifest_without_entries_raises(tmp_path: pathlib.Path) -> None:
    manifest = _write(tmp_path / "list.txt", b"# nothing here\n\n")
    with pytest.raises(SourceError, match="lists no sources"):
        list_objects([f"@{manifest}"], LOCAL)


def test_manifest_not_found_raises(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SourceError, match="not found"):
        list_objects([f"@{tmp_path}/missing.txt"], LOCAL)


def test_manifest_cycle_raises(tmp_path: pathlib.Path) -> None:
    _write(tmp_path / "a.txt", b"@b.txt\n")
    _write(tmp_path / "b.txt", b"@a.txt\n")
    with pytest.raises(SourceError, match="includes itself"):
        list_objects([f"@{tmp_path}/a.txt"], LOCAL)


# S3 (moto server on 127.0.0.1)


def test_s3_prefix_over_1000_objects(s3_storage: StorageOptions, s3_bucket: str) -> None:
    fs, _ = filesystem_for(f"s3://{s3_bucket}", s3_storage)
    fs.pipe({f"{s3_bucket}/crawl/{index:05d}.jsonl": b'{"text": "x"}\n' for index in range(1100)})

    objects = list_objects([f"s3://{s3_bucket}/crawl/"], s3_storage)

    assert len(objects) == 1100
    assert objects[0].url == f"s3://{s3_bucket}/crawl/00000.jsonl"
    assert objects[-1].url == f"s3://{s3_bucket}/crawl/01099.jsonl"


def test_s3_records_etag_and_mtime(s3_client: Any, s3_storage: StorageOptions, s3_bucket: str) -> None:
    body = b'{"text": "hello"}\n'
    client = s3_client
    client.put_object(Bucket=s3_bucket, Key="docs/a.jsonl", Body=body)
    head = client.head_object(Bucket=s3_bucket, Key="docs/a.jsonl")

    (info,) = list_objects([f"s3://{s3_bucket}/docs/a.jsonl"], s3_storage)

    assert info.size == len(body)
    assert info.etag == hashlib.md5(body).hexdigest()
    assert info.mtime == head["LastModified"].timestamp()


def test_s3_skips_directory_markers(s3_client: Any, s3_storage: StorageOptions, s3_bucket: str) -> None:
    client = s3_client
    client.put_object(Bucket=s3_bucket, Key="data/", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="data/sub/", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="data/sub/a.jsonl", Body=b"{}\n")
    client.put_object(Bucket=s3_bucket, Key="data/empty.jsonl", Body=b"")

    objects = list_objects([f"s3://{s3_bucket}/data/"], s3_storage)

    assert _urls(objects) == [f"s3://{s3_bucket}/data/empty.jsonl", f"s3://{s3_bucket}/data/sub/a.jsonl"]


def test_s3_glob(s3_storage: StorageOptions, s3_bucket: str) -> None:
    fs, _ = filesystem_for(f"s3://{s3_bucket}", s3_storage)
    fs.pipe(
        {
            f"{s3_bucket}/CC-2024-10/a.jsonl": b"{}\n",
            f"{s3_bucket}/CC-2024-10/b.txt": b"x\n",
            f"{s3_bucket}/CC-2024-18/c.jsonl": b"{}\n",
            f"{s3_bucket}/other/d.jsonl": b"{}\n",
        }
    )
    objects = list_objects([f"s3://{s3_bucket}/CC-2024-*/*.jsonl"], s3_storage)
    assert _urls(objects) == [f"s3://{s3_bucket}/CC-2024-10/a.jsonl", f"s3://{s3_bucket}/CC-2024-18/c.jsonl"]


def test_s3_sees_objects_added_by_other_writers(
    s3_client: Any, s3_storage: StorageOptions, s3_bucket: str
) -> None:
    sources = [f"s3://{s3_bucket}/feed/*.jsonl"]
    s3_client.put_object(Bucket=s3_bucket, Key="feed/1.jsonl", Body=b"{}\n")
    first = list_objects(sources, s3_storage)
    s3_client.put_object(Bucket=s3_bucket, Key="feed/2.jsonl", Body=b"{}\n")
    second = list_objects(sources, s3_storage)
    assert len(first) == 1
    assert len(second) == 2


def test_s3_missing_prefix_raises(s3_storage: StorageOptions, s3_bucket: str) -> None:
    source = f"s3://{s3_bucket}/no-such-prefix/"
    with pytest.raises(SourceError) as raised:
        list_objects([source], s3_storage)
    assert source in str(raised.value)
    assert "--endpoint-url" in str(raised.value)


def test_s3_missing_bucket_raises(s3_storage: StorageOptions) -> None:
    with pytest.raises(SourceError, match="no-such-bucket-for-test"):
        list_objects(["s3://no-such-bucket-for-test/x/"], s3_storage)


def test_s3_manifest_relative_keys(s3_storage: StorageOptions, s3_bucket: str) -> None:
    fs, _ = filesystem_for(f"s3://{s3_bucket}", s3_storage)
    fs.pipe(
        {
            f"{s3_bucket}/shards/a.jsonl": b"{}\n",
            f"{s3_bucket}/shards/b.jsonl": b"{}\n",
            f"{s3_bucket}/lists/today.txt": b"# today\n../shards/b.jsonl\n../shards/a.jsonl\n",
        }
    )
    objects = list_objects([f"@s3://{s3_bucket}/lists/today.txt"], s3_storage)
    assert _urls(objects) == [f"s3://{s3_bucket}/shards/a.jsonl", f"s3://{s3_bucket}/shards/b.jsonl"]


def test_local_manifest_of_s3_urls(s3_storage: StorageOptions, s3_bucket: str, tmp_path: pathlib.Path) -> None:
    fs, _ = filesystem_for(f"s3://{s3_bucket}", s3_storage)
    fs.pipe({f"{s3_bucket}/x/a.jsonl": b"{}\n"})
    manifest = _write(tmp_path / "list.txt", f"s3://{s3_bucket}/x/a.jsonl\n".encode())
    objects = list_objects([f"@{manifest}"], s3_storage)
    assert _urls(objects) == [f"s3://{s3_bucket}/x/a.jsonl"]


def test_s3_keys_from_options_after_pickle(
    s3_endpoint: str, s3_client: Any, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="k/a.jsonl", Body=b"{}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    storage = StorageOptions.from_cli(
        endpoint_url=s3_endpoint, storage_options=["key=testing", "secret=testing"]
    )
    on_worker = pickle.loads(pickle.dumps(storage))
    objects = list_objects([f"s3://{s3_bucket}/k/"], on_worker)
    assert len(objects) == 1


def test_real_corpora_all_listed(real_corpora: pathlib.Path) -> None:
    objects = list_objects([str(real_corpora)], LOCAL)
    on_disk = sum(1 for root, _, files in os.walk(real_corpora) for _ in files)
    assert len(objects) == on_disk
