"""What notices files: inbox watchers (inotify through watchdog, or polling), the settler that
waits until a file is finished, and the bounded work queue with its workers."""
