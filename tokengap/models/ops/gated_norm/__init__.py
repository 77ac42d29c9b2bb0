"""The gated RMSNorm of Mamba2 / GDN outputs: reference.py (PyTorch), mamba_ssm.py (mamba-ssm's Triton kernel, wrapped)."""
