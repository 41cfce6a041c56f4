"""``python -m torchwm``: the command line (:mod:`torchwm.cli`)."""

from torchwm.cli import main

if __name__ == "__main__":
    main()
