"""Run one measurement of a bench script in a fresh interpreter, so its memory and imports are its own."""

from __future__ import annotations

import json
import subprocess
import sys


def in_fresh_interpreter(script: str, spec: dict) -> dict:
    """`python script --one SPEC` (the script's own single-run mode, which prints its result as the last line
    of JSON); a failed run stops the benchmark with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, script, "--one", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{spec}: the run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
