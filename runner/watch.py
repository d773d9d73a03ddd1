"""`python -m runner.watch`, as documented; the command lives in runner/reporting/watch.py."""
from runner.reporting.watch import main

if __name__ == "__main__":
    main()
