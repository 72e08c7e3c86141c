"""rlaif-ray: scalable reinforcement learning from AI feedback on Ray.

The library half of the project: config schema, batch container, algorithms, labeler math,
metrics, the iteration driver and the CLI. Engines live in the ``actors`` package.
"""

__version__ = "0.1.0"
