"""``python -m wjsentiment``: the same as the ``wjsentiment`` command."""

from wjsentiment.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
