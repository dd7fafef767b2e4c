"""Data: decoding, alignment, RecordIO, training datasets, benchmark readers, synthetic faces.

Import the submodules directly (``igfiqa.data.decode``, ``igfiqa.data.datasets``, ...); this package
imports nothing on its own so that ``import igfiqa.data`` stays cheap.
"""
