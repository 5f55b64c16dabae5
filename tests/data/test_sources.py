"""Sources: every file kind reads to the same rows; bad files give one-line errors naming file and line."""

from __future__ import annotations

import csv
import json

import pytest

from simper.data.sources import read_rows
from simper.errors import UserError

ROWS = [
    {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."},
    {"prompt": "Count to two.", "chosen": "1, 2", "rejected": "3"},
]


def _write_all_kinds(folder):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "\n")
    (folder / "p.json").write_text(json.dumps(ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), folder / "p.parquet")
    with (folder / "p.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ROWS[0]))
        writer.writeheader()
        writer.writerows(ROWS)
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(folder / "saved")
    return ["p.jsonl", "p.json", "p.parquet", "p.csv", "saved"]


def test_every_kind_reads_the_same_rows(tmp_path):
    for name in _write_all_kinds(tmp_path):
        rows = read_rows(str(tmp_path / name))
        assert [r.values for r in rows] == ROWS, name
    assert read_rows(str(tmp_path / "p.jsonl"))[1].origin.endswith("p.jsonl:line 2")


def test_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode() + b"\n")
    assert read_rows(str(path))[0].values == ROWS[0]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", json.dumps(ROWS[0]) + "\n{not json\n", r"bad.jsonl:line 2: invalid JSON"),
        ("utf8.jsonl", b'{"prompt": "\xff"}\n', r"utf8.jsonl:line 1: invalid UTF-8"),
        ("empty.jsonl", "", r"empty.jsonl: no rows"),
        ("blank.jsonl", "\n  \n\n", r"blank.jsonl: no rows"),
        ("array.jsonl", "[1, 2]\n", r"array.jsonl:line 1: expected a JSON object"),
        (
            "ragged.csv",
            "prompt,chosen,rejected\na,b,c\nd,e\n",
            r"ragged.csv:row 3: 2 fields where the header has 3",
        ),
        ("data.txt", "hello", r"data.txt: unknown file type '.txt'"),
    ],
)
def test_bad_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError, match=message):
        read_rows(str(path))


def test_missing_path_and_plain_folder(tmp_path):
    with pytest.raises(UserError, match="no such file or folder"):
        read_rows(str(tmp_path / "missing.jsonl"))
    with pytest.raises(UserError, match="is a folder"):
        read_rows(str(tmp_path))


def test_hub_id_offline_error_says_what_to_do():
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1"):
        read_rows("no-such-org/no-such-dataset")


def test_json_lines_may_hold_line_separators_inside_strings(tmp_path):
    """json.dumps(ensure_ascii=False) writes U+2028, U+2029 and U+0085 raw inside strings; the file is
    still one row per line (str.splitlines broke such a row in two and called it invalid JSON)."""
    rows = [{"prompt": f"a{c}b", "chosen": "c", "rejected": "d"} for c in ("\u2028", "\u2029", "\x85")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    read = list(read_rows(str(path)))
    assert [r.values for r in read] == rows and read[2].origin.endswith("line 3")


def test_seeds_do_not_share_data_orders_across_epochs():
    """Seed 1's second epoch was seed 2's first (``seed + epoch``): seeds of a multi-epoch comparison
    shared their orders. Epoch 0 still draws from the seed itself."""
    import torch

    from simper.data.collate import EpochSampler

    def order(seed, epoch):
        sampler = EpochSampler(50, seed)
        sampler.start_epoch(epoch)
        return list(sampler)

    assert order(1, 1) != order(2, 0) and order(1, 1) == order(1, 1)
    assert order(7, 0) == torch.randperm(50, generator=torch.Generator().manual_seed(7)).tolist()
    orders = {tuple(order(seed, epoch)) for seed in range(1, 5) for epoch in range(4)}
    assert len(orders) == 16
