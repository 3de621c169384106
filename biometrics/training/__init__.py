"""Training the bundled offline model: an ECAPA-TDNN distilled from a pretrained
teacher. Needs the ``train`` extras; the service never imports this package."""
