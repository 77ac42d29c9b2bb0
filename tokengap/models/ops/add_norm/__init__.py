"""The residual add + RMSNorm: reference.py (x + y, nn.RMSNorm), kernel.py (ours, Triton, forward and backward)."""
