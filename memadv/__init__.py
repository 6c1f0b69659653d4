"""memadv: memorization scores, atypical/typical splits and benign adversarial training."""

__version__ = "0.1.0"
