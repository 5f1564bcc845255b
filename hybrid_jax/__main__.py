"""`python -m hybrid_jax COMMAND ...`, the same as the `hybrid-jax` console script."""

import sys

from hybrid_jax.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
