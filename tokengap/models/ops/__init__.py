"""One folder an op, its implementations side by side (mamba_ssm's `*_ref` beside each kernel, fla's ops/<op>/):

    reference.py    the pure-PyTorch twin: what CPU runs, and what every kernel is tested against
    kernel.py       our Triton kernel, registered as torch.library custom ops (compiled graphs keep them)
    mamba_ssm.py,   a library's kernel behind the twin's signature (custom ops where the library's own autograd
    fla.py, ...     Function would break the compiled graph)
    naive.py        the token-by-token recurrence a chunked twin is tested against (tests only)

ssd/ (Mamba2's scan), gdn/ (the gated delta rule), conv/ (short causal conv), gated_norm/, add_norm/ (residual add
+ RMSNorm), ce/ (linear cross-entropy). external.py is the one place that imports mamba-ssm, causal-conv1d and fla;
tokengap/models/kernels.py decides which implementation runs.
"""
