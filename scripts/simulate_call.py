"""Stream audio files to the service as an ACS call: ``biometrics simulate-call`` under the
script name older instructions use. ``biometrics simulate-call --help`` says how."""

import sys

from biometrics.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate-call", *sys.argv[1:]]))
