"""Bulk-enroll recordings through a running service: ``biometrics enroll`` under the script
name older instructions use. ``biometrics enroll --help`` says how."""

import sys

from biometrics.cli import main

if __name__ == "__main__":
    sys.exit(main(["enroll", *sys.argv[1:]]))
