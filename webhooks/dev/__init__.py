"""Development tooling: the embedded Temporal dev server launcher, the demo and its flaky
receiver. Only a developer's laptop and the tests use it; the worker and publisher never
import it.
"""
