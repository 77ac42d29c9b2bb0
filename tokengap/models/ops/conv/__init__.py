"""The short causal depthwise conv + SiLU: reference.py (F.conv1d), kernel.py (ours, Triton), external.py (causal-conv1d's and fla's, wrapped)."""
