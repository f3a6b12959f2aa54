"""The command line: argument parsing and one clear line per error; the work lives in the
library. ``rotwatchd.cli:run`` is the console script, ``main(argv) -> int`` its testable core."""

from rotwatchd.cli.main import main as main
from rotwatchd.cli.main import run as run
