"""`python -m supervisor CONFIG`: one run (supervisor.run)."""
import sys

from supervisor.run import main

sys.exit(main(sys.argv))
