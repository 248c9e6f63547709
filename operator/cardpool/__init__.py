"""cardpool: a Kubernetes operator for parallel training jobs on heterogeneous accelerator pools."""

__version__ = "0.1.0"
