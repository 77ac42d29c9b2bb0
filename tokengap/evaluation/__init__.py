"""The evaluation layer that training and the analysis share: the tokenized eval set and its scoring contexts
(evalset.py), per-token scoring of a model (scoring.py) and the score file (scorefile.py).

It imports `models` and nothing from `train` or `analysis`; `train` and `analysis` import it and never each other
(tests/test_structure.py checks the arrows).
"""
