"""The detector study (python -m tools.detector): do hard flags move a real detector's mAP?"""
