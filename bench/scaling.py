"""How build-corpus scales with NER workers (prints figures; not a test).

The same build (embedded Wikipedia excerpt, a fresh output folder each, so nothing is cached) with
1, 2, … local worker processes and on a local Ray cluster, each in a fresh interpreter:

- wall time of `build_corpus` and its speed-up over the first local run, and the CPU time of all its
  processes (what parallelism costs; on a shared machine, the figure that other jobs change least;
  children's from getrusage or from samples every 0.2 s, whichever saw more);
- NER words/s: the words recognised over the NER stage's time (waiting for NER, when it runs in workers),
  and over the whole build;
- peak RSS of the main process (getrusage), of its largest child process (getrusage of the waited-for
  children, or sampled, which also sees Ray's workers under its raylet) and of all of them together
  (sampled).

    python bench/scaling.py [--preset paper] [--episodes 64] [--workers 1,2] [--ray-cpus 2]
    python bench/scaling.py --quick      # tiny preset, 8 episodes: checks that it runs end to end

Run it on an otherwise idle machine: other jobs on the cores change every figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time

import psutil
from fresh import in_fresh_interpreter

from memtrain import assets
from memtrain.pipeline.config import PRESETS, CorpusConfig


class ProcessSampler(threading.Thread):
    """Samples this process's descendants until stopped: the largest RSS of one, the largest sum of all
    (this process included), and each one's CPU seconds as last seen. Ray's workers are children of its
    raylet, not of this process, and are never waited for by it: getrusage alone would not see them."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.every, self.largest, self.total = every, 0, 0
        self.cpu: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.done.wait(self.every):
            sizes = []
            for child in me.children(recursive=True):
                try:
                    sizes.append(child.memory_info().rss)
                    self.cpu[child.pid] = sum(child.cpu_times()[:2])
                except psutil.Error:  # ended between listing and reading
                    continue
            self.largest = max(self.largest, *sizes, 0)
            self.total = max(self.total, sum(sizes) + me.memory_info().rss)


def run_one(spec: dict) -> dict:
    """One build as `spec` says (executor, workers, ray_cpus, preset, episodes), in this process."""
    from memtrain.pipeline.build import build_corpus

    overrides = {"num_episodes": spec["episodes"], "executor": spec["executor"], "workers": spec["workers"]}
    config = CorpusConfig(**{**PRESETS[spec["preset"]], **overrides})
    if spec["executor"] == "ray":
        import ray

        ray.init(num_cpus=spec["ray_cpus"], include_dashboard=False, log_to_driver=False)
    sampler = ProcessSampler()
    sampler.start()
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = build_corpus(config, out).summary
            wall = time.perf_counter() - start
    finally:
        sampler.done.set()
        if spec["executor"] == "ray":
            ray.shutdown()
    mib = 1024 * 1024
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "wall_s": wall,
        "cpu_s": own.ru_utime
        + own.ru_stime
        + max(children.ru_utime + children.ru_stime, sum(sampler.cpu.values())),
        "ner_s": summary["seconds"]["ner"],
        "stage_s": summary["seconds"],
        "words": summary["words"],
        "passages": summary["passages"],
        "ner_words": summary["ner_words"],
        "episodes": summary["episodes"],
        "rss_main_mib": own.ru_maxrss / 1024,
        "rss_child_mib": max(children.ru_maxrss / 1024, sampler.largest / mib),
        "rss_total_mib": sampler.total / mib,
    }


def measure(spec: dict) -> dict:
    """`run_one(spec)` in a fresh interpreter, so each run's peak RSS and imports are its own."""
    return in_fresh_interpreter(__file__, spec)


def label(spec: dict) -> str:
    if spec["executor"] == "ray":
        return f"Ray, local cluster of {spec['ray_cpus']} CPUs"
    return f"local, {spec['workers']} worker{'s' if spec['workers'] > 1 else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="paper", choices=list(PRESETS))
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--workers", default="1,2", help="local worker counts, comma-separated")
    parser.add_argument(
        "--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster (0: no Ray run)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny preset, 8 episodes")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one build, JSON on stdout
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.quick:
        args.preset, args.episodes = "tiny", 8

    assets.fetch("enwiki-excerpt")
    assets.fetch("en_core_web_sm")
    base = {"preset": args.preset, "episodes": args.episodes, "ray_cpus": args.ray_cpus}
    specs = [{**base, "executor": "local", "workers": int(w)} for w in args.workers.split(",")]
    if args.ray_cpus:
        specs.append({**base, "executor": "ray", "workers": 0})

    print(f"{args.preset} preset, {args.episodes} episodes, embedded excerpt; each build from scratch\n")
    header = (
        f"{'run':<32}{'wall s':>8}{'speed-up':>10}{'CPU s':>8}{'NER s':>8}{'NER w/s':>10}{'build w/s':>11}"
    )
    print(f"{header}{'RSS main':>10}{'RSS child':>11}{'RSS all':>9}  (MiB, peak)")
    first = None
    for spec in specs:
        r = measure(spec)
        first = first or r
        print(
            f"{label(spec):<32}{r['wall_s']:>8.1f}{first['wall_s'] / r['wall_s']:>9.2f}x{r['cpu_s']:>8.1f}"
            f"{r['ner_s']:>8.1f}"
            f"{r['ner_words'] / r['ner_s']:>10,.0f}{r['ner_words'] / r['wall_s']:>11,.0f}"
            f"{r['rss_main_mib']:>10,.0f}{r['rss_child_mib']:>11,.0f}{r['rss_total_mib']:>9,.0f}",
            flush=True,
        )
    print(f"\n{first['episodes']} episodes, {first['ner_words']:,.0f} words recognised per build")
    print_stage_costs(first, label(specs[0]))


# The full English dump and the paper's corpus (docs/scaling.md): words and passages read, episodes built, and
# the words NER must recognise (~4M distinct passages of ~100 words).
FULL_DUMP = {"words": 4.5e9, "passages": 21e6, "episodes": 30_000, "ner_words": 4e8}


def print_stage_costs(r: dict, run: str) -> None:
    """Each stage's seconds in run `r`, per unit of what it scales with, and extrapolated to the full dump (in
    core-hours: the seconds of a one-process run are core-seconds)."""
    units = {
        "read+clean+passages": ("words", 1e6, "s per million words read"),
        "store": ("passages", 1e6, "s per million passages"),
        "related": ("passages", 1e6, "s per million passages (index build)"),
        "ner": ("ner_words", 1e6, "s per million words recognised"),
        "episodes": ("episodes", 1e3, "s per thousand episodes (planning, queries, masking)"),
    }
    full = "extrapolated to 4.5e9 words, 21M passages, 30k episodes"
    print(f"\nper-stage cost, {run} ({full})")
    for stage, seconds in r["stage_s"].items():
        if stage not in units:
            continue
        key, per, what = units[stage]
        rate = seconds / r[key] * per
        hours = seconds / r[key] * FULL_DUMP[key] / 3600
        print(f"  {stage:<22}{seconds:>8.1f} s  {rate:>10.2f} {what:<52} full dump ~{hours:,.1f} core-h")


if __name__ == "__main__":
    main()
