"""`python -m mangacolor` entry point (also what `torchrun -m mangacolor` runs)."""

from mangacolor.cli import main

if __name__ == "__main__":
    main()
