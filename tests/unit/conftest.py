"""Hypothesis without deadlines: a property test asserts what the code does, never how fast it
does it on a loaded machine (speed is measured in benchmarks/)."""
from hypothesis import settings

settings.register_profile("kubeops", deadline=None)
settings.load_profile("kubeops")
