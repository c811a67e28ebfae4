import json

import pytest

from safepref.core.errors import InputError
from safepref.core.io import AppendLog, iter_csv, iter_jsonl, read_pairs, read_records, write_jsonl_atomic
from safepref.core.records import Response


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n')
    with pytest.raises(InputError) as info:
        list(iter_jsonl(path))
    assert info.value.line == 2 and str(path) in str(info.value) and "malformed" in str(info.value)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(InputError, match="empty"):
        list(iter_jsonl(path))


def test_missing_field_names_field_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"prompt_id": "a", "prompt": "p", "source": "s", "text": "t"}) + "\n"
                    + json.dumps({"prompt_id": "b", "prompt": "p", "source": "s"}) + "\n")
    with pytest.raises(InputError) as info:
        read_records(path, Response)
    assert info.value.line == 2 and info.value.field == "text"


def test_csv_missing_column(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("question,x\nhello,1\n")
    with pytest.raises(InputError) as info:
        list(iter_csv(path, required=["goal"]))
    assert info.value.field == "goal"


def test_pairs_accept_standard_and_conversational(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "hi", "chosen": "hello", "rejected": "go away"},
        {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
         "rejected": [{"role": "assistant", "content": "b"}]},
        {"prompt": "q2", "chosen": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "c"}],
         "rejected": [{"role": "user", "content": "q2"}, {"role": "assistant", "content": "d"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = read_pairs(path)
    assert [p.chosen_text for p in pairs] == ["hello", "a", "c"]
    assert [p.prompt_text for p in pairs] == ["hi", "q", "q2"]
    assert pairs[2].rejected_text == "d" and len(pairs[2].rejected) == 1


def test_pairs_missing_rejected(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "chosen": "x"}) + "\n")
    with pytest.raises(InputError) as info:
        read_pairs(path)
    assert info.value.field == "rejected" and info.value.line == 1


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])

    def broken():
        yield {"a": 2}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, broken())
    assert path.read_text() == '{"a": 1}\n'
    assert list(tmp_path.iterdir()) == [path]


def test_append_log_cuts_torn_last_line_and_skips_done(tmp_path):
    path = tmp_path / "log.jsonl"
    log = AppendLog(path, key_of=lambda r: r["k"])
    log.append([{"k": "a"}, {"k": "b"}])
    with open(path, "a") as handle:
        handle.write('{"k": "c", "tex')  # a kill in the middle of a write
    log = AppendLog(path, key_of=lambda r: r["k"])
    assert log.done == {"a", "b"}
    log.append([{"k": "b"}, {"k": "c"}])
    assert [r["k"] for r in log.rows()] == ["a", "b", "c"]
