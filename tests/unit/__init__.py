"""Fast tests: one module or part at a time, no broker, no daemon, no kiosk subprocess."""
