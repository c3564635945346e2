"""``python -m destatic``: the same command as ``destatic``."""

from destatic.cli import main

if __name__ == "__main__":
    main()
