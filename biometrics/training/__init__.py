"""Training the bundled offline model (an ECAPA-TDNN distilled from a pretrained
teacher) and writing model folders. The service never imports this package.

Most modules need the ``train`` extras; :mod:`biometrics.training.folders` needs only
the service's own dependencies, so tests and the evaluation harness can write folders.
"""
