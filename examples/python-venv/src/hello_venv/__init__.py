"""A tiny application that says where it runs from: proof that the venv made it into the image."""

import sys


def main() -> int:
    """``hello-venv [NAME]`` greets NAME; ``hello-venv --check`` prints ``ok``."""
    args = sys.argv[1:]
    if args[:1] == ["--check"]:
        print("ok")
        return 0
    name = args[0] if args else "world"
    print(f"hello, {name}, from {sys.prefix} (Python {sys.version.split()[0]})")
    return 0
