"""The gated delta rule (GDN): reference.py (chunked WY form, PyTorch), naive.py (recurrence), fla.py (fla's Triton kernels as custom ops, behind our backward check)."""
