"""Cross-entropy of h @ W^T: reference.py (F.cross_entropy; per-token losses in chunks), kernel.py (the training loss in one Triton kernel)."""
