import sys

from threadsched.cli import main

sys.exit(main())
