"""`python launch/sagemaker.py …`: the same command as `python -m launch …` (launch/cli.py).

Run as a script, Python puts launch/ first on sys.path; the repository goes there instead, so that
`dogbreed`, `launch` and the SageMaker SDK's own `sagemaker` package resolve as they should.
"""

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from launch.cli import run  # noqa: E402

run()
