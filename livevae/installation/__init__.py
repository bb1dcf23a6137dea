"""Installation mode: unattended shows for weeks (opening hours, watchdog, heartbeat, log file)."""
