"""`python -m runner.convert`, as documented; the command lives in runner/engine/legacy.py."""
from runner.engine.legacy import main

if __name__ == "__main__":
    raise SystemExit(main())
