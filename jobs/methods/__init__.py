"""Erasure methods, one file each. Importing this package does not import torch.

METHOD_NAMES is what configs may name; registry.get(name) loads the implementation.
"""
METHOD_NAMES = ("uce", "esd-x", "esd-u", "fmn", "ca", "lora")
CLOSED_FORM = ("uce",)   # no training loop: always one process, whatever resources.num_workers says
