"""Mamba2's SSD scan: reference.py (chunked, PyTorch), naive.py (recurrence), mamba_ssm.py (mamba-ssm's Triton kernels as custom ops)."""
