"""slime-def: measure semantic leakage from defended image embeddings.

Subpackages:
  slime_def.data       embedding datasets: format, readers, builder, the default set
  slime_def.defenses   defenses behind a registry of spec strings
  slime_def.attack     the SLImE attack in JAX: alignment and semantic retrieval
  slime_def.evaluate   metrics, baselines and the evaluation run
"""

__version__ = "0.1.0"
