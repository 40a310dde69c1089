"""Gates: measured results in, verdicts out.

record.py     the gate record and its statuses (the floor both others stand on)
budgets.py    absolute budgets: accuracy drops and floors, latency percentiles, size, memory
regression.py the current run against a baseline report (accuracy, latency, size, memory)

Arrows: budgets -> regression -> record; nothing here imports a command or a report.
"""

from edgeship.gates.budgets import evaluate
from edgeship.gates.record import FAILING, gate
from edgeship.gates.regression import load_baseline

__all__ = ["FAILING", "evaluate", "gate", "load_baseline"]
