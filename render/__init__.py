from .. import sims  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads)
