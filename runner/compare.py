"""`python -m runner.compare`, as documented; the command lives in runner/reporting/compare.py."""
from runner.reporting.compare import main

if __name__ == "__main__":
    main()
