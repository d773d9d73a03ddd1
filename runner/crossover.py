"""`python -m runner.crossover`, as documented; the command lives in runner/reporting/crossover_report.py."""
from runner.reporting.crossover_report import main

if __name__ == "__main__":
    raise SystemExit(main())
