"""Erasure methods, one pure math file each; erasecore/catalog.py lists them and their facts.

A method file holds its loss or closed form and picks its inputs; the fine-tune loop, batching,
anchors and delta plumbing come from jobs/training/, never from another method.
"""
