import sys

from rotwatchd.cli.main import main

sys.exit(main())
