"""The one contract every rotwatchd thread follows (:class:`StoppableThread`)."""
