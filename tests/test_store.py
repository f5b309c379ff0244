import json
import logging

import pytest

from slime_def.evaluate.store import ResultStore, StoreError, key_spec, record_key


def _record(defense="gaussian(sigma=0.05)", seed=0, threat="clean-pairs", fingerprint="sha256:aaaa", **extra):
    return {
        "defense": defense, "threat": threat, "seed": seed, "retriever": "knn(neighbours=10)",
        "aligner": "ridge(l2=0.1)", "align_pairs": 100, "k": 5, "auxiliary_fraction": 0.5,
        "dataset": {"fingerprint": fingerprint, "victim_space": "victim/x", "attacker_space": "attacker/y"},
        "leakage": {"cosine": {"score": float("nan")}},
        **extra,
    }


def _append(path, *records):
    store = ResultStore(path)
    with store.open_for_append() as writer:
        for record in records:
            writer.append(record)
    return store


def test_append_then_read_round_trip(tmp_path):
    path = tmp_path / "store.jsonl"
    store = _append(path, _record(seed=0), _record(seed=1))
    contents = store.read()
    assert [r["seed"] for r in contents.records] == [0, 1]
    assert contents.lines == [1, 2]
    assert contents.records[0]["leakage"]["cosine"]["score"] is None
    assert path.read_text().count("\n") == 2


def test_missing_store_reads_empty(tmp_path):
    contents = ResultStore(tmp_path / "absent.jsonl").read()
    assert contents.records == []
    assert contents.truncated_line is None


def test_each_record_is_one_line(tmp_path):
    path = tmp_path / "store.jsonl"
    _append(path, _record(note="two\nlines"))
    assert len(path.read_text().splitlines()) == 1


def test_key_spec_normalises_order_and_numbers():
    assert key_spec("gaussian_dp(epsilon=10, delta=1e-5)") == key_spec("gaussian_dp(delta=0.00001, epsilon=10.0)")
    assert key_spec("quantize(bits=4)|pca(dim=16)") != key_spec("pca(dim=16)|quantize(bits=4)")
    assert key_spec("gaussian(renormalize=True)") != key_spec("gaussian(renormalize=1)")


def test_key_covers_run_options():
    base = record_key(_record())
    assert record_key(_record(seed=1)) != base
    assert record_key(_record(threat="defended-pairs")) != base
    assert record_key(_record(fingerprint="sha256:bbbb")) != base
    changed = _record()
    changed["k"] = 3
    assert record_key(changed) != base
    changed = _record()
    changed["dataset"]["victim_space"] = "victim/z"
    assert record_key(changed) != base


def test_truncated_last_line_is_reported_and_skipped(tmp_path, caplog):
    path = tmp_path / "store.jsonl"
    _append(path, _record(seed=0), _record(seed=1))
    full = path.read_bytes()
    path.write_bytes(full + json.dumps(_record(seed=2)).encode()[:40])
    with caplog.at_level(logging.WARNING, logger="slime_def.evaluate.store"):
        contents = ResultStore(path).read()
    assert [r["seed"] for r in contents.records] == [0, 1]
    assert contents.truncated_line == 3
    assert any(str(path) in m and "line 3" in m and "truncated" in m for m in caplog.messages)


def test_append_after_truncation_starts_fresh_line(tmp_path, caplog):
    path = tmp_path / "store.jsonl"
    _append(path, _record(seed=0))
    with open(path, "ab") as handle:
        handle.write(b'{"defense": "gauss')
    with caplog.at_level(logging.WARNING, logger="slime_def.evaluate.store"):
        _append(path, _record(seed=1))
    assert any("line 2" in m and "removed a truncated record" in m for m in caplog.messages)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1]
    assert path.read_text().endswith("\n")


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "store.jsonl"
    path.write_text(json.dumps(_record(seed=0)))
    assert len(ResultStore(path).read().records) == 1
    _append(path, _record(seed=1))
    assert [r["seed"] for r in ResultStore(path).read().records] == [0, 1]


@pytest.mark.parametrize(
    ("bad_line", "fragment"),
    [
        (b'{"defense": "gauss', "invalid JSON"),
        (b"not json at all", "invalid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"defense": "none"}', "not an evaluation record"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_corrupt_middle_line_raises_naming_it(tmp_path, bad_line, fragment):
    path = tmp_path / "store.jsonl"
    _append(path, _record(seed=0))
    with open(path, "ab") as handle:
        handle.write(bad_line + b"\n")
    _append(path, _record(seed=1))
    with pytest.raises(StoreError) as raised:
        ResultStore(path).read()
    message = str(raised.value)
    assert f"{path} line 2" in message
    assert fragment in message


def test_duplicate_records_keep_first_and_warn(tmp_path, caplog):
    path = tmp_path / "store.jsonl"
    _append(path, _record(seed=0, marker="first"), _record(seed=0, marker="second"))
    with caplog.at_level(logging.WARNING, logger="slime_def.evaluate.store"):
        contents = ResultStore(path).read()
    assert [r["marker"] for r in contents.records] == ["first"]
    assert contents.duplicates == [2]
    assert any("repeat an earlier run setting" in m for m in caplog.messages)


def test_second_writer_is_rejected(tmp_path):
    path = tmp_path / "store.jsonl"
    store = ResultStore(path)
    with store.open_for_append():
        with pytest.raises(StoreError, match="locked by another process"):
            with ResultStore(path).open_for_append():
                pass


def test_store_in_missing_folder_raises(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        with ResultStore(tmp_path / "absent" / "store.jsonl").open_for_append():
            pass
