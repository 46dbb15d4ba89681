"""Training needs the ``[train]`` extra (PyTorch), except :mod:`facegender.training.config`, which the command
line reads for its defaults; serving never imports this package."""
