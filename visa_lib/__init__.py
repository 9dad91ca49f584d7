"""visa_lib: a thin, tested library for reasoning video object segmentation (VISA, ECCV 2024).

The notebooks in ``notebooks/`` build each component step by step and import it from here.
See ``README.md`` for the ladder from the toy rung (CPU, minutes) to the full rung (GPU).
"""

__version__ = "0.1.0"
