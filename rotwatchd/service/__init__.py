"""The daemon and what it decides and records: the per-file processor, the pure decision, the
journal, the review queue, crash recovery, retries, the status file and systemd supervision."""
