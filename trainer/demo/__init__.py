"""The single-machine demo: its photo corpus (corpus.py), the experiment (run.py) and its report (report.py).

    python -m trainer.demo --config configs/cpu-demo.yaml
"""
