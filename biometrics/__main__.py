import sys

from biometrics.cli import main

sys.exit(main())
