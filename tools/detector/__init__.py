"""The detector study: does flagging hard objects move a real detector's mAP? (python -m tools.detector)"""
