"""Benchmarks of `reconcile` at scale: a fixture generator, a floor, and a runner (issue 5).

  python -m benchmarks.generate OUT --customers N --users-per M --moves K --whale W
  python -m benchmarks.run [--json OUT] [--keep DIR] [--no-fail]
"""
