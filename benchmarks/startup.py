"""Where a fresh process's start-up goes before training: imports and device set-up, stage by stage.

    python benchmarks/startup.py [--device cuda]

Run it as its own process (each stage's imports happen once per process); run it twice to see the cold
and the warm disk cache. Imports run with the garbage collector paused, as the CLI's entry point does
(``movielens_gnn/__main__.py``). Prints a table of seconds per stage and since process start.
"""

from __future__ import annotations

import gc
import sys
import time
import warnings
from pathlib import Path

gc.disable()  # before the imports below, as movielens_gnn/__main__.py does
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from movielens_gnn.clock import process_seconds  # noqa: E402  (no heavy imports)


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


if __name__ == "__main__":
    main()
