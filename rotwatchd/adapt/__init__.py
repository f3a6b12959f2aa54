"""On-device adaptation: the label store, fitting and guarding a personal head, and the idle-time
runtime that feeds it from the daemon."""
