import sys

from skutag.cli import main

sys.exit(main())
