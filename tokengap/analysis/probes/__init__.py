"""Synthetic probes: controlled documents whose scored targets isolate one ability each.

    pronoun   pronoun memory: who did it, k sentences ago (she / he, or the name)       level: n_distractors
    entity    entity tracking: which box holds an object after n moves and swaps        level: n_steps
    brackets  bracket matching: the closing delimiter of a nested line                  level: depth
    recall    associative recall: the value of a queried key among n pairs              level: n_pairs

Generation (probeset.py) writes plain documents plus targets at character offsets; scoring (scoring.py) runs
any model through `tokengap.evaluation.scoring.score` and reads the loss of the token that contains each target's first
character (a target split into several tokens is scored on its first token); compare.py and figures.py turn
the per-target results into gap tables and figures. See docs/probes.md.
"""
