"""Resume's memory against the audit log's size: a log of 5,000,000 confirmed IDs, read for a
run of 10,000 IDs (issue 14). Reproduce: `python -m benchmarks.audit_log_memory`.

Prints the log's size, the time to read it and the peak memory the reading allocated
(`tracemalloc`), for the streamed reader.
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from pathlib import Path

from async_trace_delete._cli.audit import read_confirmed_ids

SERVER = "http://mlflow.example:5000"
IDS = 5_000_000
PER_BATCH = 500


def main() -> None:
    """Write the log, read it, print the figures."""
    with tempfile.TemporaryDirectory() as directory:
        log = Path(directory) / "audit.jsonl"
        with log.open("w") as file:
            file.write(json.dumps({"run_id": "r", "event": "run_start", "tracking_uri": SERVER}))
            file.write("\n")
            for start in range(0, IDS, PER_BATCH):
                ids = [f"tr-{index:032x}" for index in range(start, start + PER_BATCH)]
                line = {"run_id": "r", "event": "batch", "experiment_id": "1", "trace_ids": ids}
                file.write(json.dumps(line, separators=(",", ":")) + "\n")
        wanted = {"1": [f"tr-{index:032x}" for index in range(0, IDS, IDS // 10_000)]}
        tracemalloc.start()
        started = time.perf_counter()
        found = read_confirmed_ids(log, server=SERVER, wanted=wanted)
        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = log.stat().st_size
        print(
            f"log {size / 1e6:,.0f} MB ({IDS:,} confirmed IDs); run of {len(wanted['1']):,} IDs: "
            f"{len(found['1']):,} found in {seconds:.1f} s, peak {peak / 1e6:.1f} MB allocated"
        )


if __name__ == "__main__":
    main()
