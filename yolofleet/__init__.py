"""yolofleet: shared code of the inference node and the control plane."""
