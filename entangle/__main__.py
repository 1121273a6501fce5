"""``python -m entangle`` runs the command line (also what ``torchrun -m entangle`` starts)."""

from entangle.cli.app import main

if __name__ == "__main__":
    main()
