"""tokengap's data pipeline: an embedded multi-domain corpus built offline from registry packages.

`python -m tokengap.train.data build|pack|unpack|prepare-hf` (see docs/data.md). Nothing is imported here, so that
`unpack` on the GPU machine needs only the standard library, numpy and tokenizers.
"""
