"""One-shot work without the daemon: ``rotwatchd check`` and ``rotwatchd fix``, locally or on a
Ray cluster, with a resumable run record."""
