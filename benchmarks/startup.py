"""Where a fresh process's start-up goes before training: imports and device set-up, stage by stage.

    python benchmarks/startup.py [--device cuda] [--by-package]

Run it as its own process (each stage's imports happen once per process); run it twice to see the cold
and the warm disk cache. Imports run with the garbage collector paused, as the CLI's entry point does
(``movielens_gnn/__main__.py``). Prints a table of seconds per stage and since process start, then whether
the core packages have a bytecode cache and which unused extras torchmetrics imported
(``movielens_gnn/startup.py``). ``--by-package`` adds where ``import movielens_gnn.cli`` spends its time by
top-level package, from ``python -X importtime`` in a child process with the same environment.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

gc.disable()  # before the imports below, as movielens_gnn/__main__.py does
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from movielens_gnn.clock import process_seconds  # noqa: E402  (no heavy imports)
from movielens_gnn.startup import CORE_PACKAGES, bytecode_cache, unused_extras_loaded  # noqa: E402


def main() -> None:
    device_name = sys.argv[sys.argv.index("--device") + 1] if "--device" in sys.argv else "cpu"
    stages: list[tuple[str, float]] = []
    start = time.perf_counter()
    before = process_seconds()

    def mark(name: str) -> None:
        stages.append((name, time.perf_counter()))

    import torch
    mark("import torch")
    import pytorch_lightning  # noqa: F401
    mark("import pytorch_lightning")
    import movielens_gnn.cli  # noqa: F401
    mark("import movielens_gnn.cli (jsonargparse, torchmetrics, the project)")
    gc.freeze()
    gc.enable()
    device = torch.device(device_name)
    torch.zeros(1, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    mark(f"first tensor on {device} (CUDA: the context)")
    dense = torch.randn(64, 64, device=device)
    (dense @ dense).sum().item()
    mark("first dense matmul (cuBLAS handle)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "sparse CSR support is in beta" notice
        sparse = torch.eye(64, device=device).to_sparse_csr()
    (sparse @ dense).sum().item()
    mark("first CSR product (cuSPARSE handle)")

    print(f"`{' '.join([Path(sys.executable).name, *sys.argv])}`  ")
    print(f"torch {torch.__version__}, device {device}" + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""))
    print()
    print("| stage | seconds | since process start |")
    print("|---|---|---|")
    if before is not None:
        print(f"| interpreter and this script's first imports | {before:.2f} | {before:.2f} |")
    for (name, at), last in zip(stages, [start] + [at for _, at in stages]):
        since = f"{at - start + before:.2f}" if before is not None else "–"  # process time at `start` is `before`
        print(f"| {name} | {at - last:.2f} | {since} |")
    print()
    state = bytecode_cache()
    for where, what in (("missing", "Bytecode cache missing after loading"),
                        ("written", "Bytecode cache written by this process")):
        print(f"{what}: {', '.join(n for n, s in state.items() if s == where) or 'none'}  ")
    print(f"(of {', '.join(CORE_PACKAGES)}; dont_write_bytecode {int(sys.dont_write_bytecode)}, "
          f"pycache_prefix {sys.pycache_prefix})  ")
    print(f"Unused extras torchmetrics imported: {', '.join(unused_extras_loaded()) or 'none'}")
    if "--by-package" in sys.argv:
        print()
        print_by_package()


def print_by_package(top: int = 12) -> None:
    """``import movielens_gnn.cli`` in a child process under ``-X importtime``, its self times summed by
    top-level package (the biggest ``top``, then the rest)."""
    code = "import gc; gc.disable(); import movielens_gnn.cli"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         env=env, check=True).stderr
    wall = time.perf_counter() - start
    seconds: dict[str, float] = defaultdict(float)
    for line in err.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[0].strip().isdigit():
            seconds[parts[2].strip().split(".")[0]] += int(parts[0]) / 1e6
    ranked = sorted(seconds.items(), key=lambda item: -item[1])
    print(f"`python -X importtime -c \"{code}\"`: {wall:.2f} s wall, {sum(seconds.values()):.2f} s of imports  ")
    print()
    print("| top-level package | import seconds (own modules) |")
    print("|---|---|")
    for name, spent in ranked[:top]:
        print(f"| {name} | {spent:.2f} |")
    print(f"| {len(ranked) - top} others | {sum(spent for _, spent in ranked[top:]):.2f} |")


if __name__ == "__main__":
    main()
