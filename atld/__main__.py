import sys

from atld.cli import main

sys.exit(main())
