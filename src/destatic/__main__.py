"""``python -m destatic``: the same command as ``destatic``."""

from destatic.cli import app

if __name__ == "__main__":
    app(prog_name="destatic")
