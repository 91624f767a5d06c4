"""The command line's entry point: ``python -m movielens_gnn`` and the ``movielens-gnn`` script."""

import gc
import sys


def run() -> None:
    """Import the command line with the cyclic garbage collector paused, then run it.

    Importing torch and Lightning (which imports ``torch._dynamo`` and sympy) creates about 400,000
    long-lived objects. The collector would walk all of them in each of several full collections while
    they load and once more at interpreter exit: 0.5 s and 1 s of a 12 s ``fit`` on two CPU cores,
    for no garbage. So it is paused while they load, and what they created is moved to the permanent
    generation (``gc.freeze``), which later collections, the one at exit included, skip; collection
    of everything created afterwards is unchanged.
    """
    gc.disable()
    try:
        from movielens_gnn.cli import main
    except KeyboardInterrupt:  # Ctrl-C while torch loads: one line and the CLI's exit code, not a traceback
        print("error: interrupted (Ctrl-C) while starting; nothing was written.", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        gc.freeze()
        gc.enable()
    main()


if __name__ == "__main__":
    run()
