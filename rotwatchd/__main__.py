import sys

from rotwatchd.cli import main

sys.exit(main())
