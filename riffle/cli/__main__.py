"""``python -m riffle.cli``: the ``riffle`` command."""

from riffle.cli import app

if __name__ == "__main__":  # importing the module (the wheel check imports every one) runs nothing
    app()
