"""`python -m mangacolor` and the `mangacolor` console script (also what `torchrun -m mangacolor` runs).

The command line is imported inside :func:`main`: worker processes started by a fork server or
spawn (the ``prepare`` stages' pool) import the main script again, and this keeps that import light
(no torch in a worker that only decodes and encodes images).
"""


def main() -> None:
    """Run the ``mangacolor`` command line."""
    from mangacolor.cli import main as run

    run()


if __name__ == "__main__":
    main()
