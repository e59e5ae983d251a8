"""The check at submit on large and hostile files: the sample it reads against reading the whole file.

What it measures: `check_dataset` (the check `submit_training_task` runs in the server process) on
- a long CSV (`--rows`, default 5,000,000 rows x 4 columns, ~65 MB),
- a wide CSV (20,000 columns x 40 rows, within the column cap; and 100,000 columns, over it),
- a Parquet file declaring many rows (`--parquet-rows`, default 20,000,000, two int8 columns: ~150 KB on
  disk, which decodes to one value per row),
each twice, in a fresh process: as it runs (a sample: the first 200,000 rows, 1,000,000 values or 32 MiB)
and with the sample made unbounded (what the check did before: every row, Parquet read whole with
`pyarrow.parquet.read_table` as it was). Time and the process's peak RSS are printed for each, and the
ratio of the times. Each check must either pass or refuse in words; the whole-file one is the baseline.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit

_CHILD = """
import json, sys, time
from mcp_trainer.errors import InvalidInputError
from mcp_trainer.preflight import readers
from mcp_trainer.preflight.tabular import check_dataset
from mcp_trainer.specs.tabular import TabularSpec
path, whole = sys.argv[1], sys.argv[2] == "whole"
if whole:
    readers.SAMPLE_ROWS = readers.SAMPLE_CELLS = readers.SAMPLE_CHARS = float("inf")
    readers.MAX_COLUMNS = 10**9
    if path.endswith(".parquet"):  # the reader before: the whole table at once
        import pyarrow.parquet as pq
        class WholeTable(readers.ParquetReader):
            def _body(self, p):
                table = pq.read_table(p)
                cols = [table.column(n).to_pylist() for n in table.column_names]
                yield from ([("" if v is None else str(v)) for v in row] for row in zip(*cols))
        import mcp_trainer.preflight.tabular as tab
        tab.ParquetReader = WholeTable
spec = TabularSpec.model_validate(
    {"task_type": "svm_classification", "data_source": path, "target_column": "label"}
)
t = time.perf_counter()
try:
    summary = check_dataset(spec)
    outcome = f"passed, {summary.rows} rows seen"
except InvalidInputError as exc:
    outcome = "refused: " + exc.message[:90]
elapsed = time.perf_counter() - t
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork and exec.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({"s": round(elapsed, 3), "peak_rss_mb": round(hwm / 1024), "outcome": outcome}))
"""


def long_csv(path: Path, rows: int) -> Path:
    with open(path, "w") as f:
        f.write("a,b,c,label\n")
        block = "0.1,0.2,0.3,1\n0.2,0.1,0.5,0\n" * 5000
        for _ in range(rows // 10_000):
            f.write(block)
    return path


def wide_csv(path: Path, columns: int, rows: int) -> Path:
    with open(path, "w") as f:
        f.write(",".join(f"c{i}" for i in range(columns)) + ",label\n")
        for r in range(rows):
            f.write(",".join("1" for _ in range(columns)) + f",{r % 2}\n")
    return path


def declared_parquet(path: Path, rows: int) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    label = np.zeros(rows, dtype=np.int8)
    label[1::2] = 1
    table = pa.table({"a": pa.array(np.zeros(rows, dtype=np.int8)), "label": pa.array(label)})
    pq.write_table(table, path, compression="zstd")
    return path


def check(path: Path, mode: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), mode], capture_output=True, text=True, check=True
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--parquet-rows", type=int, default=20_000_000)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = {
            "long_csv": long_csv(root / "long.csv", args.rows),
            "wide_csv_20k_columns": wide_csv(root / "wide20k.csv", 20_000, 40),
            "wide_csv_100k_columns": wide_csv(root / "wide100k.csv", 100_000, 20),
            "declared_parquet": declared_parquet(root / "declared.parquet", args.parquet_rows),
        }
        for name, path in files.items():
            size_mb = path.stat().st_size / 2**20
            sample, whole = check(path, "sample"), check(path, "whole")
            ratio = whole["s"] / max(sample["s"], 1e-3)
            print(f"{name} ({size_mb:.1f} MB on disk)")
            print(f"  sample: {sample['s']:.2f} s, peak RSS {sample['peak_rss_mb']} MB, {sample['outcome']}")
            print(f"  whole:  {whole['s']:.2f} s, peak RSS {whole['peak_rss_mb']} MB, {whole['outcome']}")
            print(f"  whole / sample: {ratio:.1f}x the time", flush=True)
            results[name] = {"sample": sample, "whole": whole, "time_ratio": round(ratio, 1)}
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this process, which wrote the files: peak RSS {own:.0f} MB; {time.strftime('%Y-%m-%d %H:%M')})")
    emit(results)


if __name__ == "__main__":
    main()
