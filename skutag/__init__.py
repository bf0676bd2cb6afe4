"""skutag: the application package (pipeline wiring, CLI, HTTP service, store, queue).

Stage packages (vision, ocr, text, taxonomy, fusion) never import this package;
the application composes them.
"""

__version__ = "0.2.0"
