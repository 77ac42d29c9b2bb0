"""tokengap: which tokens does a hybrid language model predict better than a transformer, and why?

One installed package; its subpackages, each importable on its own (`import tokengap` loads none of them):

    tokengap.models      the model zoo: ModelConfig, LM, the mixers and their kernels (python -m tokengap.models)
    tokengap.evaluation  the layer training and analysis share: eval sets, scoring, score files
    tokengap.train       training (python -m tokengap.train) and corpora (python -m tokengap.train.data)
    tokengap.analysis    labels, scores, comparisons, probes, figures, reports (python -m tokengap.analysis)
    tokengap/conf/       the Hydra configs (model, size, data, preset), installed with the package

Floors: models imports none of the others, evaluation only models, train and analysis never each other.
"""


def __getattr__(name: str):
    """`__version__` on first use (importlib.metadata costs ~30 ms; `import tokengap` stays at ~1 ms)."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version
        try:
            v = version("tokengap")
        except PackageNotFoundError:  # a checkout that was never installed
            v = "0+unknown"
        globals()["__version__"] = v
        return v
    raise AttributeError(f"module 'tokengap' has no attribute {name!r}")
