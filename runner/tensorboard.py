"""`python -m runner.tensorboard`, as documented; the command lives in runner/reporting/tb_replay.py."""
from runner.reporting.tb_replay import main

if __name__ == "__main__":
    main()
